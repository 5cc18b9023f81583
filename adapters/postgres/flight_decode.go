package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"

	"github.com/fraise-dev/fraise/core/flight"
)

// appender appends one value in PostgreSQL's binary format (nil for SQL
// NULL) to an Arrow builder.
type appender func(v []byte) error

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

var errLength = errors.New("value has the wrong length for its type")

// Offsets between PostgreSQL's epoch (2000-01-01) and Unix's.
const (
	pgEpochDays   = 10957
	pgEpochMicros = 946684800000000
)

// newAppender returns the decoder of t's binary format into b, which is a
// builder of t.ArrowType().
func newAppender(t flight.Type, b array.Builder) appender {
	if t.Array {
		lb := b.(*array.ListBuilder)
		et := t.Scalar()
		elem := newAppender(et, lb.ValueBuilder())
		return func(v []byte) error {
			if v == nil {
				lb.AppendNull()
				return nil
			}
			return appendArray(lb, elem, et, v)
		}
	}
	switch t.Kind {
	case flight.KindInt2:
		bb := b.(*array.Int16Builder)
		return func(v []byte) error {
			if v == nil {
				bb.AppendNull()
				return nil
			}
			if len(v) != 2 {
				return errLength
			}
			bb.Append(int16(binary.BigEndian.Uint16(v)))
			return nil
		}
	case flight.KindInt4:
		bb := b.(*array.Int32Builder)
		return func(v []byte) error {
			if v == nil {
				bb.AppendNull()
				return nil
			}
			if len(v) != 4 {
				return errLength
			}
			bb.Append(int32(binary.BigEndian.Uint32(v)))
			return nil
		}
	case flight.KindInt8:
		bb := b.(*array.Int64Builder)
		return func(v []byte) error {
			if v == nil {
				bb.AppendNull()
				return nil
			}
			if len(v) != 8 {
				return errLength
			}
			bb.Append(int64(binary.BigEndian.Uint64(v)))
			return nil
		}
	case flight.KindFloat4:
		bb := b.(*array.Float32Builder)
		return func(v []byte) error {
			if v == nil {
				bb.AppendNull()
				return nil
			}
			if len(v) != 4 {
				return errLength
			}
			bb.Append(math.Float32frombits(binary.BigEndian.Uint32(v)))
			return nil
		}
	case flight.KindFloat8:
		bb := b.(*array.Float64Builder)
		return func(v []byte) error {
			if v == nil {
				bb.AppendNull()
				return nil
			}
			if len(v) != 8 {
				return errLength
			}
			bb.Append(math.Float64frombits(binary.BigEndian.Uint64(v)))
			return nil
		}
	case flight.KindBool:
		bb := b.(*array.BooleanBuilder)
		return func(v []byte) error {
			if v == nil {
				bb.AppendNull()
				return nil
			}
			if len(v) != 1 {
				return errLength
			}
			bb.Append(v[0] != 0)
			return nil
		}
	case flight.KindNumeric:
		bb := b.(*array.Decimal128Builder)
		prec, scale := t.Precision, t.Scale
		return func(v []byte) error {
			if v == nil {
				bb.AppendNull()
				return nil
			}
			n, err := decodeNumeric(v, prec, scale)
			if err != nil {
				return err
			}
			bb.Append(n)
			return nil
		}
	case flight.KindText, flight.KindBytea:
		var bb *array.BinaryBuilder
		if sb, ok := b.(*array.StringBuilder); ok {
			bb = sb.BinaryBuilder
		} else {
			bb = b.(*array.BinaryBuilder)
		}
		return func(v []byte) error {
			if v == nil {
				bb.AppendNull()
				return nil
			}
			bb.Append(v)
			return nil
		}
	case flight.KindJSONB:
		bb := b.(*array.StringBuilder).BinaryBuilder
		return func(v []byte) error {
			if v == nil {
				bb.AppendNull()
				return nil
			}
			// jsonb's binary format is a version byte (1) and the text.
			if len(v) < 1 || v[0] != 1 {
				return errors.New("unknown jsonb binary version")
			}
			bb.Append(v[1:])
			return nil
		}
	case flight.KindUUID:
		bb := b.(*array.FixedSizeBinaryBuilder)
		return func(v []byte) error {
			if v == nil {
				bb.AppendNull()
				return nil
			}
			if len(v) != 16 {
				return errLength
			}
			bb.Append(v)
			return nil
		}
	case flight.KindDate:
		bb := b.(*array.Date32Builder)
		return func(v []byte) error {
			if v == nil {
				bb.AppendNull()
				return nil
			}
			if len(v) != 4 {
				return errLength
			}
			d := int32(binary.BigEndian.Uint32(v))
			if d == math.MaxInt32 || d == math.MinInt32 {
				return errors.New("infinite dates cannot be exported")
			}
			bb.Append(arrow.Date32(int64(d) + pgEpochDays))
			return nil
		}
	case flight.KindTimestamp, flight.KindTimestampTZ:
		bb := b.(*array.TimestampBuilder)
		return func(v []byte) error {
			if v == nil {
				bb.AppendNull()
				return nil
			}
			if len(v) != 8 {
				return errLength
			}
			us := int64(binary.BigEndian.Uint64(v))
			if us == math.MaxInt64 || us == math.MinInt64 {
				return errors.New("infinite timestamps cannot be exported")
			}
			bb.Append(arrow.Timestamp(us + pgEpochMicros))
			return nil
		}
	}
	return func([]byte) error { return fmt.Errorf("type %s cannot be exported", t) }
}

// appendArray decodes a one-dimensional array: ndim, has-null flag,
// element oid, then per dimension its size and lower bound, then each
// element as a length (-1 for NULL) and its bytes.
func appendArray(lb *array.ListBuilder, elem appender, et flight.Type, v []byte) error {
	if len(v) < 12 {
		return errLength
	}
	ndim := int32(binary.BigEndian.Uint32(v))
	if got := binary.BigEndian.Uint32(v[8:]); !acceptsOID(et, got) {
		return fmt.Errorf("array of oid %d, want %d", got, typeOID(et))
	}
	lb.Append(true)
	if ndim == 0 {
		return nil
	}
	if ndim != 1 {
		return errors.New("only one-dimensional arrays can be exported")
	}
	if len(v) < 20 {
		return errLength
	}
	count := int(int32(binary.BigEndian.Uint32(v[12:])))
	v = v[20:]
	for range count {
		if len(v) < 4 {
			return errLength
		}
		l := int32(binary.BigEndian.Uint32(v))
		v = v[4:]
		if l < 0 {
			if err := elem(nil); err != nil {
				return err
			}
			continue
		}
		if int(l) > len(v) {
			return errLength
		}
		if err := elem(v[:l:l]); err != nil {
			return err
		}
		v = v[l:]
	}
	if len(v) != 0 {
		return errLength
	}
	return nil
}

// numeric signs in the binary format.
const (
	numericPos  = 0x0000
	numericNeg  = 0x4000
	numericNaN  = 0xC000
	numericPInf = 0xD000
	numericNInf = 0xF000
)

var pow10 = [...]uint64{1, 10, 100, 1000}

var (
	big10000 = decimal128.FromU64(10000)
	errNaN   = errors.New("NaN and infinite numerics cannot be exported")
	errScale = errors.New("numeric has more fractional digits than its declared scale")
	errPrec  = errors.New("numeric exceeds its declared precision")
)

// decodeNumeric reads a numeric's binary format (ndigits, weight, sign,
// dscale, then ndigits base-10000 digits, the first weighted 10000^weight)
// as an exact decimal128 with the given scale.
func decodeNumeric(v []byte, prec, scale int32) (decimal128.Num, error) {
	if len(v) < 8 {
		return decimal128.Num{}, errLength
	}
	ndigits := int(int16(binary.BigEndian.Uint16(v)))
	weight := int(int16(binary.BigEndian.Uint16(v[2:])))
	sign := binary.BigEndian.Uint16(v[4:])
	switch sign {
	case numericPos, numericNeg:
	case numericNaN, numericPInf, numericNInf:
		return decimal128.Num{}, errNaN
	default:
		return decimal128.Num{}, errLength
	}
	if ndigits < 0 || len(v) != 8+2*ndigits {
		return decimal128.Num{}, errLength
	}
	if ndigits == 0 {
		return decimal128.Num{}, nil
	}
	digits := v[8:]
	// The digits as one integer are worth 10^exp10 per unit; scaled to the
	// column's scale that is a shift by 10^shift.
	shift := 4*(weight-ndigits+1) + int(scale)
	// A negative shift can only drop zeros PostgreSQL padded the last
	// base-10000 digit with; drop them from that digit before
	// accumulating, so no intermediate needs more than 38 digits.
	lastDiv, lastMul, lastDigits := uint64(1), uint64(10000), int32(4)
	if shift < 0 {
		if shift <= -4 {
			return decimal128.Num{}, errScale
		}
		lastDiv = pow10[-shift]
		lastMul = 10000 / lastDiv
		lastDigits = 4 + int32(shift)
		shift = 0
	}
	last := uint64(binary.BigEndian.Uint16(digits[2*(ndigits-1):]))
	if last%lastDiv != 0 {
		return decimal128.Num{}, errScale
	}
	last /= lastDiv
	var n decimal128.Num
	if ndigits <= 4 { // at most 16 decimal digits: fits a uint64
		var u uint64
		for i := 0; i < ndigits-1; i++ {
			u = u*10000 + uint64(binary.BigEndian.Uint16(digits[2*i:]))
		}
		n = decimal128.FromU64(u*lastMul + last)
	} else {
		for i := 0; i < ndigits-1; i++ {
			if !n.FitsInPrecision(34) { // n*10000 must stay within 38 digits
				return decimal128.Num{}, errPrec
			}
			n = n.Mul(big10000).Add(decimal128.FromU64(uint64(binary.BigEndian.Uint16(digits[2*i:]))))
		}
		if !n.FitsInPrecision(38 - lastDigits) {
			return decimal128.Num{}, errPrec
		}
		n = n.Mul(decimal128.FromU64(lastMul)).Add(decimal128.FromU64(last))
	}
	if shift > 0 {
		// Check before multiplying: a 128-bit product would wrap silently.
		if int32(shift) >= prec || !n.FitsInPrecision(prec-int32(shift)) {
			return decimal128.Num{}, errPrec
		}
		n = n.Mul(decimal128.GetScaleMultiplier(shift))
	}
	if !n.FitsInPrecision(prec) {
		return decimal128.Num{}, errPrec
	}
	if sign == numericNeg {
		n = n.Negate()
	}
	return n, nil
}
