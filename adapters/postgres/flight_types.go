package postgres

import "github.com/fraise-dev/fraise/core/flight"

// kindOID maps the exportable kinds to their type OIDs and those of their
// one-dimensional arrays: what the binary protocol's row description must
// say for a column of that type. core/flight speaks of kinds only; the
// OIDs are PostgreSQL's, so they live here.
var kindOID = map[flight.Kind][2]uint32{
	flight.KindInt2: {21, 1005}, flight.KindInt4: {23, 1007}, flight.KindInt8: {20, 1016}, flight.KindFloat4: {700, 1021},
	flight.KindFloat8: {701, 1022}, flight.KindNumeric: {1700, 1231}, flight.KindBool: {16, 1000}, flight.KindText: {25, 1009},
	flight.KindUUID: {2950, 2951}, flight.KindDate: {1082, 1182}, flight.KindTimestamp: {1114, 1115},
	flight.KindTimestampTZ: {1184, 1185}, flight.KindBytea: {17, 1001}, flight.KindJSONB: {3802, 3807},
}

// typeOID returns the type OID a result column of type t has.
func typeOID(t flight.Type) uint32 {
	o := kindOID[t.Kind]
	if t.Array {
		return o[1]
	}
	return o[0]
}

// textAlikes are the types besides text whose binary format is text's (the
// characters, in the client encoding, unpadded), and their arrays. bpchar
// (char(n)) is not one: it sends its blank padding, which its cast to text
// (and so every filter) drops, so a view must cast it to text or varchar.
var textAlikes = [][2]uint32{
	{1043, 1015}, // varchar, which the configuration may declare
	{19, 1003},   // name
}

// acceptsOID reports whether a result column whose type has this OID can
// be read as t: its own OID or, for text, the OID of a type sending the
// same bytes, such as varchar.
func acceptsOID(t flight.Type, oid uint32) bool {
	if oid == typeOID(t) {
		return true
	}
	if t.Kind != flight.KindText {
		return false
	}
	i := 0
	if t.Array {
		i = 1
	}
	for _, o := range textAlikes {
		if oid == o[i] {
			return true
		}
	}
	return false
}
