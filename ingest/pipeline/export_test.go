package pipeline

import (
	"context"
	"io"

	"github.com/starpipe/starpipe/ingest"
	"github.com/starpipe/starpipe/ingest/parse"
)

// SetParseFunc replaces the consumer's parser (ingest.ParseReader) so that
// a test can make it fail in ways no real file does. Call it before the
// consumer handles anything.
func SetParseFunc(c *Consumer, fn func(ctx context.Context, r io.Reader, format ingest.Format, opt parse.Options, sink parse.Sink) (ingest.Format, parse.Stats, error)) {
	c.parse = fn
}
