package celerybridge

// Properties is the envelope's properties object: AMQP-style message
// properties that kombu's virtual transport keeps in JSON. A decoded message
// re-encodes with null, "" and absent members exactly as received.
type Properties struct {
	CorrelationID string // the task id under Celery
	ReplyTo       string // the producer's oid; only the rpc:// backend reads it
	// Extra holds properties this package does not model, in order. They sit
	// between reply_to and delivery_mode because that is where Celery puts
	// options it leaks on retries (replaced_task_nesting, origin).
	Extra        []Member
	DeliveryMode int    // 2 (persistent) from Celery
	Expiration   string // TTL in milliseconds as a decimal string, set with expires
	DeliveryInfo DeliveryInfo
	Priority     int    // 0..9; lower is served first on Redis
	BodyEncoding string // "base64" from kombu; empty: the body is used as is
	// DeliveryTag is kombu's per-message tag (a uuid4) and the key of its
	// unacked records. Required: a worker crashes with KeyError without it.
	DeliveryTag string

	wire wire
}

// DeliveryInfo says where the message was published. kombu's QoS reads both
// exchange and routing_key when it records a message as unacked, so a
// message without them crashes the consumer.
type DeliveryInfo struct {
	Exchange   string // "" routes directly to the queue named by RoutingKey
	RoutingKey string
	Extra      []Member
	// Redelivered is set by kombu when it restores an unacked message.
	Redelivered bool

	wire wire
}

const (
	pCorrelationID uint = iota
	pReplyTo
	pDeliveryMode
	pExpiration
	pDeliveryInfo
	pPriority
	pBodyEncoding
	pDeliveryTag
)

const (
	dExchange uint = iota
	dRoutingKey
	dRedelivered
)

func (s *scanner) decodeProperties(p *Properties) error {
	*p = Properties{}
	if s.peek() != '{' {
		return s.wrongType(ErrMissingProperties)
	}
	return s.members("", func(key []byte) (err error) {
		switch string(key) {
		case "correlation_id":
			err = s.readString(&p.CorrelationID, &p.wire, pCorrelationID)
		case "reply_to":
			err = s.readString(&p.ReplyTo, &p.wire, pReplyTo)
		case "delivery_mode":
			err = s.readInt(&p.DeliveryMode, &p.wire, pDeliveryMode)
		case "expiration":
			err = s.readString(&p.Expiration, &p.wire, pExpiration)
		case "delivery_info":
			if s.peek() != '{' {
				return s.wrongType(ErrMissingDeliveryInfo)
			}
			p.wire.mark(pDeliveryInfo, false, false)
			err = s.decodeDeliveryInfo(&p.DeliveryInfo)
		case "priority":
			err = s.readInt(&p.Priority, &p.wire, pPriority)
		case "body_encoding":
			err = s.readString(&p.BodyEncoding, &p.wire, pBodyEncoding)
		case "delivery_tag":
			err = s.readString(&p.DeliveryTag, &p.wire, pDeliveryTag)
		default:
			err = s.extra(&p.Extra, key)
		}
		if err != nil {
			return fieldError(err, ErrBadProperty, "properties", key)
		}
		return nil
	})
}

func (s *scanner) decodeDeliveryInfo(d *DeliveryInfo) error {
	*d = DeliveryInfo{}
	return s.members("", func(key []byte) (err error) {
		switch string(key) {
		case "exchange":
			err = s.readString(&d.Exchange, &d.wire, dExchange)
		case "routing_key":
			err = s.readString(&d.RoutingKey, &d.wire, dRoutingKey)
		case "redelivered":
			err = s.readBool(&d.Redelivered, &d.wire, dRedelivered)
		default:
			err = s.extra(&d.Extra, key)
		}
		if err != nil {
			return fieldError(err, ErrBadProperty, "properties.delivery_info", key)
		}
		return nil
	})
}

// appendProperties writes properties in the order kombu assembles them:
// Celery's correlation_id and reply_to, leaked options, then what
// Producer.publish and the virtual channel add.
func appendProperties(dst []byte, p *Properties) []byte {
	o := openObject(dst)
	o.optString("correlation_id", p.CorrelationID, p.wire, pCorrelationID)
	o.optString("reply_to", p.ReplyTo, p.wire, pReplyTo)
	o.members(p.Extra)
	o.optInt("delivery_mode", p.DeliveryMode, p.wire, pDeliveryMode)
	o.optString("expiration", p.Expiration, p.wire, pExpiration)
	// delivery_info is always written: kombu's QoS needs it.
	o.key("delivery_info")
	o.buf = appendDeliveryInfo(o.buf, &p.DeliveryInfo)
	o.optInt("priority", p.Priority, p.wire, pPriority)
	o.optString("body_encoding", p.BodyEncoding, p.wire, pBodyEncoding)
	o.optString("delivery_tag", p.DeliveryTag, p.wire, pDeliveryTag)
	return o.close()
}

func appendDeliveryInfo(dst []byte, d *DeliveryInfo) []byte {
	o := openObject(dst)
	// exchange and routing_key are required by kombu's QoS, even when empty.
	if d.Exchange != "" || !d.wire.has(dExchange) || !d.wire.isNull(dExchange) {
		o.str("exchange", d.Exchange)
	} else {
		o.null("exchange")
	}
	if d.RoutingKey != "" || !d.wire.has(dRoutingKey) || !d.wire.isNull(dRoutingKey) {
		o.str("routing_key", d.RoutingKey)
	} else {
		o.null("routing_key")
	}
	o.members(d.Extra)
	o.optBool("redelivered", d.Redelivered, d.wire, dRedelivered)
	return o.close()
}
