package celerybridge

import "testing"

// The side-car's per-message cost when it judges a peeked message: the
// claim rule, and the task decode its router then needs.
func BenchmarkJudgeMessage(b *testing.B) {
	raw := benchMessages(b)["delay"]
	b.Run("claimCheck", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, fault := claimCheck(raw); fault != "" {
				b.Fatal(fault)
			}
		}
	})
	b.Run("DecodeTask", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := DecodeTask(raw); err != nil {
				b.Fatal(err)
			}
		}
	})
}
