package strata

import (
	"context"
	"fmt"
)

// WaitForPhase asks for the instance every poll interval (WithPollInterval,
// default 500 ms) until its phase is phase, and returns it then. It returns
// early with an error wrapping ErrInstanceFailed when the instance fails
// while another phase is awaited, with the API error when the instance
// cannot be read (a 404 once it is deleted), and with ctx's error when ctx
// ends first: give ctx a deadline.
func (c *Client) WaitForPhase(ctx context.Context, project, name string, phase Phase) (*Instance, error) {
	for {
		inst, err := c.GetInstance(ctx, project, name)
		if err != nil {
			return nil, err
		}
		if inst.Status.Phase == phase {
			return inst, nil
		}
		if inst.Status.Phase == PhaseFailed {
			return inst, fmt.Errorf("%w: %s/%s: %s", ErrInstanceFailed, project, name, inst.Status.Message)
		}
		if err := sleep(ctx, c.pollInterval); err != nil {
			return inst, fmt.Errorf("strata: waiting for %s/%s to be %s (it is %s): %w",
				project, name, phase, inst.Status.Phase, err)
		}
	}
}

// WaitForDeletion asks for the instance every poll interval until the API
// answers 404, i.e. its data is gone, and returns nil then.
func (c *Client) WaitForDeletion(ctx context.Context, project, name string) error {
	for {
		inst, err := c.GetInstance(ctx, project, name)
		if IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := sleep(ctx, c.pollInterval); err != nil {
			return fmt.Errorf("strata: waiting for %s/%s to be deleted (it is %s): %w",
				project, name, inst.Status.Phase, err)
		}
	}
}
