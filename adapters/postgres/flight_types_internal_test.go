package postgres

import (
	"testing"

	"github.com/fraise-dev/fraise/core/flight"
)

func TestTypeOID(t *testing.T) {
	tests := []struct {
		name, typ string
		want      uint32
	}{
		{"int2", "smallint", 21},
		{"numeric", "numeric(12,2)", 1700},
		{"timestamptz", "timestamptz", 1184},
		{"timestamp", "timestamp", 1114},
		{"array", "text[]", 1009},
		{"uuid", "uuid", 2950},
		{"jsonb", "jsonb", 3802},
		{"date", "date", 1082},
		{"numeric array", "numeric(5,1)[]", 1231},
	}
	for _, tt := range tests {
		if got := typeOID(mustFlightType(t, tt.typ)); got != tt.want {
			t.Errorf("%s: typeOID(%s): got %d, want %d", tt.name, tt.typ, got, tt.want)
		}
	}
	// Every kind has its OIDs: a kind added to core/flight without them
	// would be refused at the first export.
	for k := flight.KindInt2; k <= flight.KindJSONB; k++ {
		if o := kindOID[k]; o[0] == 0 || o[1] == 0 {
			t.Errorf("kind %d has no OID", k)
		}
	}
}

func TestAcceptsOID(t *testing.T) {
	tests := []struct {
		typ  string
		oid  uint32
		want bool
	}{
		{"text", 25, true},
		{"text", 1043, true}, // varchar: text's bytes
		{"varchar", 1043, true},
		{"varchar", 25, true},
		{"text", 19, true},    // name: text's bytes
		{"text", 1042, false}, // bpchar keeps its padding
		{"text", 1009, false},
		{"text[]", 1009, true},
		{"varchar[]", 1015, true},
		{"text[]", 1003, true},
		{"text[]", 1014, false},
		{"text[]", 1043, false},
		{"int4", 23, true},
		{"int4", 20, false},
		{"int4", 1043, false},
		{"jsonb", 1043, false},
		{"numeric(12,2)", 1700, true},
	}
	for _, tt := range tests {
		if got := acceptsOID(mustFlightType(t, tt.typ), tt.oid); got != tt.want {
			t.Errorf("acceptsOID(%s, %d): got %v, want %v", tt.typ, tt.oid, got, tt.want)
		}
	}
}

func mustFlightType(tb testing.TB, s string) flight.Type {
	tb.Helper()
	typ, err := flight.ParseType(s)
	if err != nil {
		tb.Fatal(err)
	}
	return typ
}
