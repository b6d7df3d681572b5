package app

import (
	"fmt"
	"io"

	"github.com/comfyfleet/comfyfleet/internal/auth"
	"github.com/comfyfleet/comfyfleet/internal/config"
)

// buildAuth loads users and the signing secret. A generated admin password
// is printed once to out; demo mode says loudly that its password is public.
func (a *App) buildAuth(cfg config.Config, out io.Writer) (*auth.Authenticator, []byte, error) {
	authn, generated, err := auth.Open(cfg, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("app: auth: %w", err)
	}
	secret, err := auth.LoadSecret(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("app: auth secret: %w", err)
	}
	if out == nil {
		out = io.Discard
	}
	switch {
	case cfg.Demo:
		a.log.Warn("DEMO MODE: login admin / admin123 is a well-known password; never expose this gateway")
	case generated != "":
		fmt.Fprintf(out, "\nComfyFleet created the user admin with the password:\n\n    %s\n\n"+
			"It is shown only this once; its hash is kept in the data dir.\n\n", generated)
	}
	return authn, secret, nil
}
