package celerybridge_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spinecore/spine-go/celerybridge"
)

// A Go consumer sharing Celery's queues: claim in kombu's order, run, ack;
// hand poison back as a dead letter; restore what crashed consumers (Python
// or Go) abandoned; put in-flight work back on a warm shutdown.
func ExampleTransport() {
	opts, err := celerybridge.ParseBrokerURL("redis://localhost:6379/0")
	if err != nil {
		log.Fatal(err)
	}
	rdb := redis.NewClient(opts)
	tr := celerybridge.NewTransport(rdb, celerybridge.TransportOptions{})
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()

	go func() { // kombu scans about every 100 s
		for range time.Tick(100 * time.Second) {
			if _, err := tr.RestoreVisible(ctx); err != nil && !errors.Is(err, celerybridge.ErrMutexHeld) {
				log.Print(err)
			}
		}
	}()

	var inFlight []string
	defer func() { // warm shutdown: what we hold goes back to the head of its queue
		if _, err := tr.Restore(context.Background(), inFlight...); err != nil {
			log.Print(err)
		}
	}()
	for ctx.Err() == nil {
		d, err := tr.Claim(ctx, []string{"celery", "reports"}, time.Second)
		switch {
		case errors.Is(err, celerybridge.ErrNoMessage), errors.Is(err, celerybridge.ErrDeadLettered):
			continue
		case err != nil:
			log.Print(err)
			continue
		}
		inFlight = []string{d.Tag}
		task, err := celerybridge.DecodeTask(d.Raw)
		if err != nil {
			_ = tr.DeadLetter(ctx, d, err.Error())
			continue
		}
		log.Printf("running %s[%s] from %s (priority %d)", task.Name, task.ID, d.Queue, d.Priority)
		if err := tr.Ack(ctx, d.Tag); err != nil {
			log.Print(err) // ErrNotClaimed: a visibility scan restored it meanwhile
		}
		inFlight = nil
	}
}
