// Package configs holds the default files shipped in the starpipe binary:
// the CCM catalogues (ccm/) and the default rules that map findings to CCM
// controls (mapping.yaml), the nuclei templates (templates/), the example
// schedules and the demo's stand-in analyser (demo/), so that the binary
// needs no files on disk.
package configs

import "embed"

// FS is the default files shipped in the binary, rooted at this directory
// (paths such as "ccm/catalogs.yaml" and "mapping.yaml").
//
//go:embed ccm mapping.yaml templates schedules.example.yaml demo
var FS embed.FS
