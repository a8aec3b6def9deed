package e2e_test

import (
	"testing"

	"github.com/exportstream/exportstream/e2e/stack"
)

func TestMain(m *testing.M) { stack.Main(m) }
