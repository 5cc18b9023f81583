package authztest_test

import (
	"testing"

	"github.com/fraise-dev/fraise/extauthz/authztest"
)

func TestAPIKeyStoreContract(t *testing.T) {
	authztest.TestAPIKeyStoreContract(t, authztest.NewAPIKeyStore)
}

func TestDecisionLogContract(t *testing.T) {
	authztest.TestDecisionLogContract(t, authztest.NewDecisionLogFixture)
}
