package phase2

import (
	"testing"

	"github.com/google/uuid"
)

// Bucket is part of the on-disk contract: a release that changed it would
// move messages between paths at a constant percentage.
func TestBucketIsStable(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]int{
		"d0adac29-c2e5-4f64-9a1c-4b42a6fab8b6": 56,
		"27189417-34f4-4210-9faf-f2b692c0ed6e": 55,
		"db0b368a-1d32-4ecd-8162-3e5c1cc42973": 43,
		"":                                     3,
		"x":                                    66,
	} {
		if got := Bucket(id); got != want {
			t.Errorf("Bucket(%q) = %d, want %d", id, got, want)
		}
	}
}

func TestBucketSpreadsCeleryIDs(t *testing.T) {
	t.Parallel()
	const n = 100_000
	var counts [100]int
	for range n {
		counts[Bucket(uuid.NewString())]++
	}
	for b, c := range counts {
		if c < n/100*8/10 || c > n/100*12/10 {
			t.Errorf("bucket %d holds %d of %d ids, want about %d", b, c, n, n/100)
		}
	}
}

// Raising a percentage keeps the ids already on the new path there.
func TestPathIsMonotoneInThePercentage(t *testing.T) {
	t.Parallel()
	r := Route{Task: "t", Mode: ModeReroute, Queue: "q", Pipeline: "p", Lane: "normal"}
	for range 2000 {
		id := uuid.NewString()
		prev := ModeShadow
		for p := 0; p <= 100; p += 10 {
			r.Percent = p
			got := r.Path(id)
			if prev == ModeReroute && got != ModeReroute {
				t.Fatalf("id %s left reroute when the percentage rose to %d", id, p)
			}
			prev = got
		}
		if prev != ModeReroute {
			t.Fatalf("id %s not rerouted at 100%%", id)
		}
		r.Percent = 0
		if r.Path(id) != ModeShadow {
			t.Fatalf("reroute 0%% must shadow everything")
		}
	}
	sh := Route{Mode: ModeShadow, Percent: 100}
	if sh.Path("x") != ModeShadow {
		t.Error("shadow 100% must shadow")
	}
	sh.Percent = 0
	if sh.Path("x") != ModePassthrough {
		t.Error("shadow 0% must pass through")
	}
	if (Route{Mode: ModePassthrough, Percent: 100}).Path("x") != ModePassthrough {
		t.Error("passthrough must pass through whatever its percentage")
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		r    Route
		want string
	}{
		{Route{Mode: ModePassthrough, Percent: 40}, "passthrough"},
		{Route{Mode: ModeShadow, Percent: 100}, "shadow 100%"},
		{Route{Mode: ModeShadow, Percent: 25}, "shadow 25%, passthrough the rest"},
		{Route{Mode: ModeReroute, Percent: 50}, "reroute 50%, shadow the rest"},
		{Route{Mode: ModeReroute, Percent: 0}, "reroute 0% (all shadow)"},
	} {
		if got := c.r.Describe(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.r, got, c.want)
		}
	}
}
