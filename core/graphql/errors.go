package graphql

import "github.com/fraise-dev/fraise/core"

// requestCodes gives the core code of each of the engine's own
// extensions.code values: the engine names its refusals for GraphQL
// clients, and a transport maps core codes (one table each), so it needs
// the core code behind each name. A request error's name not listed here
// is a core code already (UNAUTHENTICATED, FORBIDDEN, TIMEOUT, ...).
var requestCodes = map[string]core.Code{
	CodeParseFailed:          core.CodeInvalid,
	CodeValidationFailed:     core.CodeInvalid,
	CodeBadRequest:           core.CodeInvalid,
	CodeIntrospection:        core.CodeInvalid,
	CodeDepthLimit:           core.CodeInvalid,
	CodeAliasLimit:           core.CodeInvalid,
	CodeRootFieldLimit:       core.CodeInvalid,
	CodeCostLimit:            core.CodeInvalid,
	CodeSelectionLimit:       core.CodeInvalid,
	CodePersistedNotFound:    core.CodeInvalid,
	CodePersistedUnsupported: core.CodeInvalid,
	CodePersistedHash:        core.CodeInvalid,
	CodeNotTrusted:           core.CodeInvalid,
	CodeMutationNotAllowed:   core.CodeInvalid,
	CodeResultTooLarge:       core.CodeTooLarge,
	CodeStatementTimeout:     core.CodeTimeout,
}

// Code returns the core code of e: its cause's, when it has one, and
// otherwise the one its extensions.code stands for (CodeInvalid for a
// name the engine does not use, which only a hand-built Error can have).
func (e *Error) Code() core.Code {
	if e.Err != nil {
		return core.ErrorCode(e.Err)
	}
	c, _ := e.Extensions["code"].(string)
	if code, ok := requestCodes[c]; ok {
		return code
	}
	for _, code := range core.Codes() {
		if string(code) == c {
			return code
		}
	}
	return core.CodeInvalid
}
