package scoring

// Metric identifiers, in the order of Table 15 of the CVSS v3.1
// specification. String prints metrics in this order, so it is also the
// canonical order.
const (
	mAV = iota
	mAC
	mPR
	mUI
	mS
	mC
	mI
	mA
	mE
	mRL
	mRC
	mCR
	mIR
	mAR
	mMAV
	mMAC
	mMPR
	mMUI
	mMS
	mMC
	mMI
	mMA
	numMetrics

	firstTemporal = mE
	firstEnv      = mCR
	numEnv        = numMetrics - firstEnv

	baseMask     = 1<<firstTemporal - 1
	temporalMask = 1<<firstEnv - 1 - baseMask
)

// metricDef names a metric and lists its values as the specification writes
// them. A value is stored as its index in values. For every optional metric
// the first value is X (Not Defined), so the zero index means "absent" and a
// vector that spells out X stores exactly what a vector that omits the metric
// stores: both score the same in FIRST's calculator. Modified base metrics
// list their values in the same order as the base metric they modify, shifted
// by one for X, so that index-1 is directly the base metric's index.
type metricDef struct {
	name    string
	values  string // one byte per value: every CVSS v3.x value is a single letter
	allowed string // values for error messages
}

var metrics = [numMetrics]metricDef{
	mAV:  {"AV", "NALP", "N, A, L, P"},
	mAC:  {"AC", "LH", "L, H"},
	mPR:  {"PR", "NLH", "N, L, H"},
	mUI:  {"UI", "NR", "N, R"},
	mS:   {"S", "UC", "U, C"},
	mC:   {"C", "HLN", "H, L, N"},
	mI:   {"I", "HLN", "H, L, N"},
	mA:   {"A", "HLN", "H, L, N"},
	mE:   {"E", "XHFPU", "X, H, F, P, U"},
	mRL:  {"RL", "XUWTO", "X, U, W, T, O"},
	mRC:  {"RC", "XCRU", "X, C, R, U"},
	mCR:  {"CR", "XHML", "X, H, M, L"},
	mIR:  {"IR", "XHML", "X, H, M, L"},
	mAR:  {"AR", "XHML", "X, H, M, L"},
	mMAV: {"MAV", "XNALP", "X, N, A, L, P"},
	mMAC: {"MAC", "XLH", "X, L, H"},
	mMPR: {"MPR", "XNLH", "X, N, L, H"},
	mMUI: {"MUI", "XNR", "X, N, R"},
	mMS:  {"MS", "XUC", "X, U, C"},
	mMC:  {"MC", "XHLN", "X, H, L, N"},
	mMI:  {"MI", "XHLN", "X, H, L, N"},
	mMA:  {"MA", "XHLN", "X, H, L, N"},
}

const noValue = 0xff

// valueIndex maps (metric, byte) to the value's index, or noValue. A table
// lookup is what keeps parsing in the same league as go-cvss's bit packing.
var valueIndex = func() (t [numMetrics][256]uint8) {
	for m := range t {
		for b := range t[m] {
			t[m][b] = noValue
		}
		for i := 0; i < len(metrics[m].values); i++ {
			t[m][metrics[m].values[i]] = uint8(i)
		}
	}
	return t
}()

// metricKey packs a metric name of one to three bytes into an integer so that
// lookupMetric is a switch over integer constants rather than strings.
func metricKey(name string) uint32 {
	switch len(name) {
	case 1:
		return 1<<24 | uint32(name[0])<<16
	case 2:
		return 2<<24 | uint32(name[0])<<16 | uint32(name[1])<<8
	case 3:
		return 3<<24 | uint32(name[0])<<16 | uint32(name[1])<<8 | uint32(name[2])
	}
	return 0
}

// Packed metric names, see metricKey.
const (
	kAV  = 2<<24 | 'A'<<16 | 'V'<<8
	kAC  = 2<<24 | 'A'<<16 | 'C'<<8
	kPR  = 2<<24 | 'P'<<16 | 'R'<<8
	kUI  = 2<<24 | 'U'<<16 | 'I'<<8
	kS   = 1<<24 | 'S'<<16
	kC   = 1<<24 | 'C'<<16
	kI   = 1<<24 | 'I'<<16
	kA   = 1<<24 | 'A'<<16
	kE   = 1<<24 | 'E'<<16
	kRL  = 2<<24 | 'R'<<16 | 'L'<<8
	kRC  = 2<<24 | 'R'<<16 | 'C'<<8
	kCR  = 2<<24 | 'C'<<16 | 'R'<<8
	kIR  = 2<<24 | 'I'<<16 | 'R'<<8
	kAR  = 2<<24 | 'A'<<16 | 'R'<<8
	kMAV = 3<<24 | 'M'<<16 | 'A'<<8 | 'V'
	kMAC = 3<<24 | 'M'<<16 | 'A'<<8 | 'C'
	kMPR = 3<<24 | 'M'<<16 | 'P'<<8 | 'R'
	kMUI = 3<<24 | 'M'<<16 | 'U'<<8 | 'I'
	kMS  = 2<<24 | 'M'<<16 | 'S'<<8
	kMC  = 2<<24 | 'M'<<16 | 'C'<<8
	kMI  = 2<<24 | 'M'<<16 | 'I'<<8
	kMA  = 2<<24 | 'M'<<16 | 'A'<<8
)

// lookupMetric returns the metric id for a name exactly as the specification
// spells it (upper case), or -1.
func lookupMetric(name string) int {
	switch metricKey(name) {
	case kAV:
		return mAV
	case kAC:
		return mAC
	case kPR:
		return mPR
	case kUI:
		return mUI
	case kS:
		return mS
	case kC:
		return mC
	case kI:
		return mI
	case kA:
		return mA
	case kE:
		return mE
	case kRL:
		return mRL
	case kRC:
		return mRC
	case kCR:
		return mCR
	case kIR:
		return mIR
	case kAR:
		return mAR
	case kMAV:
		return mMAV
	case kMAC:
		return mMAC
	case kMPR:
		return mMPR
	case kMUI:
		return mMUI
	case kMS:
		return mMS
	case kMC:
		return mMC
	case kMI:
		return mMI
	case kMA:
		return mMA
	}
	return -1
}
