package operation

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// FlightServicePrefix is the gRPC path prefix of every Arrow Flight method.
const FlightServicePrefix = "/arrow.flight.protocol.FlightService/"

// Flight is what a policy sees of an Arrow Flight call.
type Flight struct {
	// Method is the Flight method, e.g. "GetFlightInfo" or "DoGet".
	Method string `json:"method"`
	// Dataset is the dataset the call names, from the path of its
	// FlightDescriptor joined with "."; "" when the call carries no
	// descriptor extauthz can read (DoGet's ticket is opaque and signed by
	// the core, a command descriptor is not a path, a compressed or
	// truncated body cannot be read).
	Dataset string `json:"dataset"`
}

// ParseFlight reports whether path is an Arrow Flight method and, if so,
// returns the method and the dataset read from body, the gRPC-framed request
// Envoy forwarded (possibly partial, possibly empty).
func ParseFlight(path string, body []byte) (Flight, bool) {
	method, ok := strings.CutPrefix(path, FlightServicePrefix)
	if !ok || method == "" || strings.ContainsAny(method, "/?") {
		return Flight{}, false
	}
	f := Flight{Method: method}
	msg, ok := firstMessage(body)
	if !ok {
		return f, true
	}
	switch method {
	case "GetFlightInfo", "GetSchema", "PollFlightInfo":
		f.Dataset = descriptorPath(msg)
	case "DoPut", "DoExchange":
		// FlightData: the first message carries the descriptor as field 1.
		if d, ok := bytesField(msg, 1); ok {
			f.Dataset = descriptorPath(d)
		}
	}
	return f, true
}

// FlightBodyHash is the body hash the identity assertion binds for a call
// of the Flight method: for the methods whose one request message is a
// FlightDescriptor (GetFlightInfo, GetSchema, PollFlightInfo, whose body
// Envoy buffers), the lower-case hex SHA-256 of that message when body
// holds it whole and uncompressed, and otherwise of the bytes body holds,
// which hash to no descriptor the core can receive: a call extauthz could
// not read is one the core refuses. For every other method (they stream,
// and Envoy buffers none of their body) it is "": the assertion then binds
// the method and path alone.
func FlightBodyHash(method string, body []byte) string {
	switch method {
	case "GetFlightInfo", "GetSchema", "PollFlightInfo":
	default:
		return ""
	}
	msg, ok := firstMessage(body)
	if !ok || len(msg) != len(body)-5 {
		msg = body
	}
	sum := sha256.Sum256(msg)
	return hex.EncodeToString(sum[:])
}

// firstMessage returns the first length-prefixed gRPC message of body, if
// it is complete and uncompressed.
func firstMessage(body []byte) ([]byte, bool) {
	if len(body) < 5 || body[0] != 0 {
		return nil, false
	}
	n := binary.BigEndian.Uint32(body[1:5])
	if uint64(n) > uint64(len(body)-5) {
		return nil, false
	}
	return body[5 : 5+n], true
}

// bytesField returns the first length-delimited field num of msg.
func bytesField(msg []byte, num protowire.Number) ([]byte, bool) {
	for len(msg) > 0 {
		n, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return nil, false
		}
		msg = msg[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(msg)
			if l < 0 {
				return nil, false
			}
			return v, true
		}
		l = protowire.ConsumeFieldValue(n, typ, msg)
		if l < 0 {
			return nil, false
		}
		msg = msg[l:]
	}
	return nil, false
}

// descriptorPath reads a FlightDescriptor (type = 1, cmd = 2, path = 3) and
// returns its path joined with ".", or "" unless it is a well-formed PATH
// descriptor of printable segments.
func descriptorPath(msg []byte) string {
	const typePath = 1
	var typ uint64
	var path []string
	for len(msg) > 0 {
		n, wt, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return ""
		}
		msg = msg[l:]
		switch {
		case n == 1 && wt == protowire.VarintType:
			v, l := protowire.ConsumeVarint(msg)
			if l < 0 {
				return ""
			}
			typ, msg = v, msg[l:]
		case n == 3 && wt == protowire.BytesType:
			v, l := protowire.ConsumeBytes(msg)
			if l < 0 || !printable(v) {
				return ""
			}
			path, msg = append(path, string(v)), msg[l:]
		default:
			l := protowire.ConsumeFieldValue(n, wt, msg)
			if l < 0 {
				return ""
			}
			msg = msg[l:]
		}
	}
	if typ != typePath || len(path) == 0 {
		return ""
	}
	return strings.Join(path, ".")
}

// printable reports whether a path segment is non-empty, short and free of
// control characters and valid UTF-8, so that it can reach logs and headers safely.
func printable(b []byte) bool {
	if len(b) == 0 || len(b) > 256 || !utf8.Valid(b) {
		return false
	}
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
