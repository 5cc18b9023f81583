package flight_test

import "testing"

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
		if got := mustType(t, tt.typ).AcceptsOID(tt.oid); got != tt.want {
			t.Errorf("%s.AcceptsOID(%d): got %v, want %v", tt.typ, tt.oid, got, tt.want)
		}
	}
}
