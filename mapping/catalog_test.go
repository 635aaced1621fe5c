package mapping_test

import (
	"slices"
	"testing"

	"github.com/starpipe/starpipe/configs"
	"github.com/starpipe/starpipe/mapping"
)

func loadCatalogs(t testing.TB) *mapping.Catalogs {
	t.Helper()
	cats, err := mapping.LoadCatalogs(configs.FS)
	if err != nil {
		t.Fatal(err)
	}
	return cats
}

func TestCatalogSizes(t *testing.T) {
	cats := loadCatalogs(t)
	if got := cats.Default(); got != "4.0.13" {
		t.Errorf("default version %q, want 4.0.13", got)
	}
	for _, tc := range []struct {
		version string
		want    int
		domains map[string]int
	}{
		{"4.0.13", 197, map[string]int{"TVM": 10, "AIS": 7, "IVS": 9, "CEK": 21, "LOG": 13}},
		{"4.1", 207, map[string]int{"TVM": 12, "AIS": 8, "I&S": 9, "LOG": 14}},
	} {
		c, ok := cats.Get(tc.version)
		if !ok {
			t.Fatalf("no catalogue %s", tc.version)
		}
		if c.Len() != tc.want {
			t.Errorf("CCM %s: %d controls, want %d", tc.version, c.Len(), tc.want)
		}
		if len(c.Domains) != 17 {
			t.Errorf("CCM %s: %d domains, want 17", tc.version, len(c.Domains))
		}
		per := map[string]int{}
		for _, ctl := range c.Controls {
			per[ctl.Domain]++
			if c.DomainName(ctl.Domain) == "" {
				t.Errorf("CCM %s %s: domain %s has no name", tc.version, ctl.ID, ctl.Domain)
			}
		}
		for d, n := range tc.domains {
			if per[d] != n {
				t.Errorf("CCM %s domain %s: %d controls, want %d", tc.version, d, per[d], n)
			}
		}
	}
}

func TestCatalogRenumbering(t *testing.T) {
	cats := loadCatalogs(t)
	v40, _ := cats.Get("4.0.13")
	v41, _ := cats.Get("v4.1.0") // spellings of the same version
	for _, tc := range []struct {
		cat   *mapping.Catalog
		id    string
		title string
	}{
		{v40, "TVM-07", "Vulnerability Identification"},
		{v41, "TVM-03", "Vulnerability Identification"},
		{v40, "TVM-03", "Vulnerability Remediation Schedule"},
		{v41, "TVM-08", "Vulnerability Remediation Schedule"},
		{v40, "ivs-04", "OS Hardening and Base Controls"},
		{v41, "I&S-04", "OS Hardening and Base Controls"},
		{v41, "AIS-08", "API Security"},
	} {
		ctl, ok := tc.cat.Control(tc.id)
		if !ok || ctl.Title != tc.title {
			t.Errorf("CCM %s %s = %+v, want title %q", tc.cat.Version, tc.id, ctl, tc.title)
		}
	}
	if _, ok := v41.Control("IVS-04"); ok {
		t.Error("CCM 4.1 has IVS-04; IVS was renamed I&S")
	}
	if _, ok := cats.Get("4.2"); ok {
		t.Error("CCM 4.2 resolved")
	}
}

func TestCrosswalk(t *testing.T) {
	cats := loadCatalogs(t)
	v40, _ := cats.Get("4.0.13")
	v41, _ := cats.Get("4.1")
	for _, tc := range []struct {
		cat       *mapping.Catalog
		id, fw    string
		want      []string // must all be present
		wantVia   string
		wantEmpty bool
	}{
		{cat: v40, id: "TVM-07", fw: "iso27001", want: []string{"A.8.8"}},
		{cat: v40, id: "TVM-07", fw: "soc2", want: []string{"CC7.1"}},
		{cat: v40, id: "TVM-07", fw: "nist80053", want: []string{"RA-5", "SA-11"}},
		{cat: v40, id: "IVS-04", fw: "nist80053", want: []string{"CM-6"}},
		{cat: v40, id: "AIS-05", fw: "iso27001", want: []string{"A.8.29"}},
		{cat: v40, id: "IVS-06", fw: "soc2", wantEmpty: true}, // "No Mapping" in CSA's data
		// v4.1 borrows from the same-title v4.0.13 control.
		{cat: v41, id: "TVM-03", fw: "iso27001", want: []string{"A.8.8"}, wantVia: "4.0.13 TVM-07"},
		{cat: v41, id: "I&S-03", fw: "nist80053", want: []string{"SC-7"}, wantVia: "4.0.13 IVS-03"},
		{cat: v41, id: "AIS-05", fw: "iso27001", wantEmpty: true}, // retitled: no same-title control
	} {
		ids, via := tc.cat.Crosswalk(tc.id, tc.fw)
		if tc.wantEmpty {
			if len(ids) != 0 {
				t.Errorf("CCM %s %s %s: %v, want none", tc.cat.Version, tc.id, tc.fw, ids)
			}
			continue
		}
		for _, w := range tc.want {
			if !slices.Contains(ids, w) {
				t.Errorf("CCM %s %s %s: %v lacks %s", tc.cat.Version, tc.id, tc.fw, ids, w)
			}
		}
		if via != tc.wantVia {
			t.Errorf("CCM %s %s %s: via %q, want %q", tc.cat.Version, tc.id, tc.fw, via, tc.wantVia)
		}
	}
	for key, want := range map[string]string{"ISO-27001": "iso27001", "SOC2": "soc2", "nist-800-53": "nist80053", "iso27002": "iso27002"} {
		f, ok := cats.Framework(key)
		if !ok || f.Key != want {
			t.Errorf("Framework(%q) = %+v, %v; want %s", key, f, ok, want)
		}
	}
	if _, ok := cats.Framework("pci"); ok {
		t.Error("Framework(pci) resolved")
	}
}
