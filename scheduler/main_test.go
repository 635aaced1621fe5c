package scheduler_test

import (
	"testing"

	"github.com/starpipe/starpipe/store/storetest"
)

func TestMain(m *testing.M) { storetest.Main(m) }
