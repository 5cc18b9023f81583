package core

import "slices"

// MaskKind is how a masked value is hidden from a principal without the
// scope that lifts the mask.
type MaskKind string

// The mask kinds, as GraphQL's @mask(kind:) names them.
const (
	// MaskEmail keeps the first character and the domain: a***@acme.test.
	MaskEmail MaskKind = "EMAIL"
	// MaskPII keeps the first character: A***.
	MaskPII MaskKind = "PII"
	// MaskSecret keeps nothing: ***.
	MaskSecret MaskKind = "SECRET"
)

// Valid reports whether k is one of the mask kinds.
func (k MaskKind) Valid() bool { return k == MaskEmail || k == MaskPII || k == MaskSecret }

// Protection is field-level access control: the scopes a principal needs
// to read a value at all (GraphQL's @auth) and how it is masked for one
// without the scope that lifts the mask (@mask). Every way of reading a
// field applies the same protection: GraphQL, and Flight exports of the
// same field.
type Protection struct {
	// Auth are the scopes a principal must all hold to read the value.
	Auth []string
	// Mask, when set, hides the value unless the principal holds MaskScope.
	Mask      MaskKind
	MaskScope string
}

// Protected reports whether pr restricts anyone.
func (pr Protection) Protected() bool { return len(pr.Auth) > 0 || pr.Mask != "" }

// Readable reports whether p may read the value, masked or not.
func (pr Protection) Readable(p Principal) bool {
	return !slices.ContainsFunc(pr.Auth, func(s string) bool { return !p.HasScope(s) })
}

// Clear reports whether p reads the value as it is: readable and, when
// masked, holding the scope that lifts the mask. Filtering or sorting by a
// value needs it too, since a filter reveals the clear value one guess at
// a time.
func (pr Protection) Clear(p Principal) bool {
	return pr.Readable(p) && (pr.Mask == "" || p.HasScope(pr.MaskScope))
}

// ViewField is a scalar value inside the data (jsonb) column of the view a
// GraphQL object type reads, with the protection the schema declares for
// it: what another way of reading that view (a Flight dataset over the
// type) needs in order to apply the same field protection as GraphQL.
type ViewField struct {
	// Keys are the JSON keys from the view's data column to the value.
	Keys []string
	// List is true for a list of scalars.
	List bool
	// Protection holds the @auth of every field on the way (and of their
	// types) and the @mask of the last.
	Protection Protection
}
