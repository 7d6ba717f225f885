package celerybridge

import (
	"errors"
	"testing"
	"time"
)

func TestParseTimeReadsEveryVersionsFormat(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 11, 23, 16, 55, 48, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		// Celery 5.2-5.6 isoformat of an aware UTC datetime.
		{"2026-11-23T16:55:48.632818+00:00", base.Add(632818 * time.Microsecond)},
		{"2026-11-23T16:55:48+00:00", base},
		// kombu 5.2's JSON encoder replaces +00:00 with Z.
		{"2026-11-23T16:55:48.632818Z", base.Add(632818 * time.Microsecond)},
		{"2026-11-23T16:55:48Z", base},
		// Naive times, as Celery writes with enable_utc=False: read as UTC.
		{"2026-11-23T16:55:48.632818", base.Add(632818 * time.Microsecond)},
		{"2026-11-23T16:55:48", base},
		{"2026-11-23 16:55:48", base},
		{"2026-11-23T16:55", base.Add(-48 * time.Second)},
		{"2026-11-23", time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)},
		// Fractions of every length, read as fractions (5.2.6 itself misreads these).
		{"2026-11-23T16:55:48.5+00:00", base.Add(500 * time.Millisecond)},
		{"2026-11-23T16:55:48.123+00:00", base.Add(123 * time.Millisecond)},
		{"2026-11-23T16:55:48.123456789Z", base.Add(123456789)},
		{"2026-11-23T16:55:48,25Z", base.Add(250 * time.Millisecond)},
		// Offsets with and without colon, hours only, and seconds.
		{"2026-11-23T17:55:48+01:00", base},
		{"2026-11-23T17:55:48+0100", base},
		{"2026-11-23T17:55:48+01", base},
		{"2026-11-23T15:55:48-01:00", base},
		{"2026-11-23T16:55:48+0000", base},
		{"2026-11-23T17:55:49+01:00:01", base},
	}
	for _, tt := range tests {
		got, err := ParseTime(tt.in)
		if err != nil {
			t.Errorf("ParseTime(%q): %v", tt.in, err)
			continue
		}
		if !got.Equal(tt.want) {
			t.Errorf("ParseTime(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "tomorrow", "2026-11-23T", "2026-13-01", "2026-02-29", "2026-11-23T24:00:00",
		"2026-11-23T16:55:48.", "2026-11-23T16:55:48+25:00", "2026-11-23T16:55:48 junk", "26-11-23", "2026-1-2"} {
		if _, err := ParseTime(bad); !errors.Is(err, ErrBadDate) {
			t.Errorf("ParseTime(%q): %v, want ErrBadDate", bad, err)
		}
	}
}

func TestFormatTimeIsSafeEverywhere(t *testing.T) {
	t.Parallel()
	for _, tm := range []time.Time{
		time.Date(2026, 11, 23, 16, 55, 48, 0, time.UTC),
		time.Date(2026, 11, 23, 16, 55, 48, 500_000_000, time.UTC),
		time.Date(2026, 11, 23, 16, 55, 48, 123_456_789, time.FixedZone("CET", 3600)),
		time.Date(1, 1, 1, 0, 0, 0, 1000, time.UTC),
	} {
		s := FormatTime(tm)
		if len(s) != len("2026-11-23T16:55:48.000000+00:00") || s[len(s)-6:] != "+00:00" || s[19] != '.' {
			t.Errorf("FormatTime(%v) = %q: not six digits and +00:00", tm, s)
		}
		if !safeFor52(s) {
			t.Errorf("FormatTime(%v) = %q is not read alike by 5.2.6", tm, s)
		}
		back, err := ParseTime(s)
		if err != nil || !back.Equal(tm.Truncate(time.Microsecond)) {
			t.Errorf("ParseTime(FormatTime(%v)) = %v, %v", tm, back, err)
		}
	}
	if got := FormatTime(time.Date(2026, 11, 23, 16, 55, 48, 632818000, time.UTC)); got != "2026-11-23T16:55:48.632818+00:00" {
		t.Errorf("FormatTime = %q, Celery writes 2026-11-23T16:55:48.632818+00:00", got)
	}
}

// The 5.2.6 emulation reproduces the regex's known misreadings.
func TestCelery52Misreadings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		safe bool
	}{
		{"2026-11-23T16:55:48.632818+00:00", true},
		{"2026-11-23T16:55:48+00:00", true},
		{"2026-11-23T16:55:48Z", true},
		{"2026-11-23T16:55:48.000000Z", true},
		{"2026-11-23T16:55:48", true},
		{"2026-11-23", true},
		{"2026-11-23T17:55:48+01:00", true},
		{"2026-11-23T16:55:48+0000", true},           // offset dropped, but it was zero
		{"2026-11-23T16:55:48.5+00:00", false},       // read as 5 µs
		{"2026-11-23T16:55:48.123+00:00", false},     // read as 123 µs
		{"2026-11-23T16:55:48.123456789Z", false},    // microsecond out of range: discarded
		{"2026-11-23T17:55:48+0100", false},          // offset dropped: an hour late
		{"2026-11-23T17:55:49+01:00:01", false},      // seconds in the offset are ignored
		{"2026-11-23T16:55:48.0000001+00:00", false}, // 1 µs instead of 100 ns
	}
	for _, tt := range tests {
		if got := safeFor52(tt.in); got != tt.safe {
			t.Errorf("safeFor52(%q) = %v, want %v", tt.in, got, tt.safe)
		}
	}
	if got, ok := celery52Time("2026-11-23T16:55:48.5+00:00"); !ok || got.Nanosecond() != 5000 {
		t.Errorf(".5 read as %v, %v; 5.2.6 reads 5 µs", got, ok)
	}
}
