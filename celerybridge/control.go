package celerybridge

import (
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// broadcastTTL is how long a broadcast stays valid. Celery gives a revoke
// one second (its reply timeout); a worker discards a broadcast whose
// expires header has passed, so a side-car whose clock runs a little ahead
// of the workers' would lose every revoke. Ten seconds tolerates the skew.
const broadcastTTL = 10 * time.Second

// controlBody is the body kombu's Mailbox._publish sends, in its key order.
type controlBody struct {
	Method      string         `json:"method"`
	Arguments   map[string]any `json:"arguments"`
	Destination []string       `json:"destination"`
	Pattern     *string        `json:"pattern"`
	Matcher     *string        `json:"matcher"`
}

type controlHeaders struct {
	Clock   int64   `json:"clock"`
	Expires float64 `json:"expires"`
}

type controlEnvelope struct {
	Body            string         `json:"body"`
	ContentEncoding string         `json:"content-encoding"`
	ContentType     string         `json:"content-type"`
	Headers         controlHeaders `json:"headers"`
	Properties      struct {
		DeliveryMode int `json:"delivery_mode"`
		DeliveryInfo struct {
			Exchange   string `json:"exchange"`
			RoutingKey string `json:"routing_key"`
		} `json:"delivery_info"`
		Priority     int    `json:"priority"`
		BodyEncoding string `json:"body_encoding"`
		DeliveryTag  string `json:"delivery_tag"`
	} `json:"properties"`
}

// revokeMessage is the envelope of app.control.revoke(taskID,
// terminate=terminate) as Celery 5.2.6 broadcasts it to every worker.
func revokeMessage(taskID string, terminate bool) ([]byte, error) {
	body, err := json.Marshal(controlBody{
		Method:    "revoke",
		Arguments: map[string]any{"task_id": taskID, "terminate": terminate, "signal": "SIGTERM"},
	})
	if err != nil {
		return nil, err
	}
	var env controlEnvelope
	env.Body = base64.StdEncoding.EncodeToString(body)
	env.ContentEncoding = "utf-8"
	env.ContentType = ContentTypeJSON
	env.Headers = controlHeaders{Clock: 1, Expires: float64(time.Now().Add(broadcastTTL).UnixMicro()) / 1e6}
	env.Properties.DeliveryMode = 2
	env.Properties.DeliveryInfo.Exchange = pidboxExchange
	env.Properties.BodyEncoding = "base64"
	env.Properties.DeliveryTag = uuid.NewString()
	return json.Marshal(env)
}
