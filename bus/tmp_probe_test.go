package bus

import (
	"context"
	"strconv"
	"testing"
	"time"
)

func TestProbeSplit(t *testing.T) {
	for _, comp := range []string{"none", "snappy", "zstd"} {
		ctx := context.Background()
		e, _ := StartEmbedded(ctx, EmbeddedConfig{}, nil)
		cfg := Config{Brokers: e.Addrs(), Compression: comp}.WithDefaults()
		p := NewProducer(cfg, nil)
		const N = 400
		pls := make([][]byte, 64)
		for i := range pls {
			pls[i] = benchBatch(uint64(i), 100_000)
		}
		c := NewConsumer(cfg, "g", TopicScanResults, nil)
		p.Publish(ctx, TopicScanResults, Message{Value: pls[0]})
		c.Fetch(ctx) // join
		st := time.Now()
		for s := 0; s < N; s += 8 {
			var batch []Message
			for i := 0; i < 8; i++ {
				batch = append(batch, Message{Key: []byte("run-" + strconv.Itoa(s+i)), Value: pls[(s+i)%64]})
			}
			if err := p.Publish(ctx, TopicScanResults, batch...); err != nil {
				t.Fatal(err)
			}
		}
		prod := time.Since(st)
		st = time.Now()
		for i := 0; i < N; i++ {
			m, err := c.Fetch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			c.Commit(ctx, m)
		}
		fc := time.Since(st)
		c.Close()
		p.Close()
		e.Close()
		t.Logf("%s: produce %v (%.0f msg/s), fetch+commit %v (%.0f msg/s)", comp, prod, N/prod.Seconds(), fc, N/fc.Seconds())
	}
}
