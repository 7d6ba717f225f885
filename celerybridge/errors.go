package celerybridge

import "errors"

// Errors a caller branches on, usually to dead-letter a message with the
// reason. Each names something that would crash, poison or silently misroute
// a Python worker; returned errors wrap them with the offending member, so
// test with errors.Is.
var (
	// ErrMalformedJSON: the envelope or a JSON body is not JSON that
	// Python's json.loads accepts.
	ErrMalformedJSON = errors.New("celerybridge: malformed JSON")

	// ErrHeadersNotObject: headers is neither an object nor null; a worker
	// fails on headers['task'] (TypeError) and drops the message.
	ErrHeadersNotObject = errors.New("celerybridge: headers is not an object")
	// ErrMissingProperties: properties is absent or not an object; kombu
	// reads payload['properties'] unconditionally.
	ErrMissingProperties = errors.New("celerybridge: properties missing")
	// ErrMissingDeliveryTag: no properties.delivery_tag; the worker dies
	// with KeyError and the message is lost.
	ErrMissingDeliveryTag = errors.New("celerybridge: properties.delivery_tag missing")
	// ErrMissingDeliveryInfo: no properties.delivery_info with exchange and
	// routing_key; kombu's QoS crashes recording the message as unacked.
	ErrMissingDeliveryInfo = errors.New("celerybridge: properties.delivery_info incomplete")
	// ErrBadHeader: a known header has a JSON type Celery never writes.
	ErrBadHeader = errors.New("celerybridge: header has the wrong type")
	// ErrBadProperty: a known property has a JSON type kombu never writes.
	ErrBadProperty = errors.New("celerybridge: property has the wrong type")

	// ErrBadBody: the body member is missing or not a string.
	ErrBadBody = errors.New("celerybridge: body is not a string")
	// ErrBadBase64: body_encoding is base64 but the body is not.
	ErrBadBase64 = errors.New("celerybridge: body is not valid base64")
	// ErrUnknownBodyEncoding: a body_encoding kombu does not register.
	ErrUnknownBodyEncoding = errors.New("celerybridge: unknown body_encoding")
	// ErrUnknownContentType: a content type no kombu serializer handles.
	ErrUnknownContentType = errors.New("celerybridge: unknown content-type")
	// ErrCompression: the compression header names a method this package
	// cannot apply, or the body does not decompress.
	ErrCompression = errors.New("celerybridge: bad or unsupported compression")
	// ErrOpaqueBody: the body is pickle, yaml or msgpack, which this
	// package carries but never decodes.
	ErrOpaqueBody = errors.New("celerybridge: opaque body is never decoded")

	// ErrWrongProtocol: the message is valid under another task protocol
	// than the one asked for (protocol 1 or hybrid given to a protocol 2
	// decoder, or the reverse).
	ErrWrongProtocol = errors.New("celerybridge: message uses another task protocol")
	// ErrBodyNotTriple: a protocol 2 body is not [args, kwargs, embed]; a
	// 2-element body kills 5.2.6 and 5.6 workers alike ("not enough values
	// to unpack") and comes back as a poison pill.
	ErrBodyNotTriple = errors.New("celerybridge: protocol 2 body is not [args, kwargs, embed]")
	// ErrBodyNotObject: a protocol 1 body is not a JSON object.
	ErrBodyNotObject = errors.New("celerybridge: protocol 1 body is not an object")
	// ErrArgsNotList: args is not a JSON array (null included).
	ErrArgsNotList = errors.New("celerybridge: args is not a list")
	// ErrKwargsNotObject: kwargs is not a JSON object (null included);
	// workers raise InvalidTaskError.
	ErrKwargsNotObject = errors.New("celerybridge: kwargs is not an object")
	// ErrEmbedNotObject: the embed element is not an object; a worker
	// calls embed.get(...) on it.
	ErrEmbedNotObject = errors.New("celerybridge: embed is not an object")
	// ErrMissingTaskID: no task id; a worker crashes with KeyError.
	ErrMissingTaskID = errors.New("celerybridge: task id missing")
	// ErrMissingTaskName: no task name; a worker cannot dispatch it.
	ErrMissingTaskName = errors.New("celerybridge: task name missing")

	// ErrBadDate: an eta or expires no Celery version can parse; workers
	// reject such a message with InvalidTaskError.
	ErrBadDate = errors.New("celerybridge: unparseable date")
	// ErrUnsafeDate: an eta or expires that 5.2.6 reads differently from
	// newer versions (a fraction other than six digits, an offset without a
	// colon): refused on write.
	ErrUnsafeDate = errors.New("celerybridge: date a 5.2.6 worker misreads")

	// ErrUnknownType: a kombu {"__type__", "__value__"} wrapper with a type
	// kombu does not register; kombu 5.3+ refuses the whole body.
	ErrUnknownType = errors.New("celerybridge: unknown __type__")
	// ErrTypedValue: a kombu wrapper whose __value__ does not decode as its
	// __type__ says.
	ErrTypedValue = errors.New("celerybridge: bad __value__ for __type__")
	// ErrUnencodable: a Go value the target cannot receive (bytes for
	// kombu 5.2, channels, functions, ...).
	ErrUnencodable = errors.New("celerybridge: value cannot be encoded")
)

// errNotType is the internal signal that a member has another JSON type than
// expected; callers turn it into the sentinel that names the member.
var errNotType = errors.New("unexpected JSON type")
