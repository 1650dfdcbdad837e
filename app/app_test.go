package app_test

import (
	"testing"

	"go.uber.org/fx"

	"github.com/sigil-signer/sigil/app"
)

// TestGraphs checks that every command's dependency graph is complete.
func TestGraphs(t *testing.T) {
	opts := app.Options{ConfigPath: t.TempDir() + "/none.yaml", AllowMissingConfig: true, BaseDir: t.TempDir()}
	for name, o := range map[string]fx.Option{
		"verbs":      app.Core(opts),
		"watermarks": fx.Options(app.Core(opts), app.Watermarks()),
		"serve":      fx.Options(app.Core(opts), app.Serve()),
		"serve-dev":  fx.Options(app.Core(opts), app.Serve(), app.Dev(app.DevOptions{})),
	} {
		if err := fx.ValidateApp(o); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
