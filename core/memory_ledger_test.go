package core_test

import (
	"testing"

	"github.com/spinecore/spine-go/core"
	"github.com/spinecore/spine-go/core/ledgertest"
)

func TestMemoryLedgerConformance(t *testing.T) {
	ledgertest.Run(t, func(t *testing.T) core.Ledger { return core.NewMemoryLedger() })
}
