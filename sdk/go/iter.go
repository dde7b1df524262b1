package strata

import (
	"context"
	"iter"
)

// pages walks a list page by page: fetch gets the page after token ("" for
// the first) and returns its items and the next token ("" on the last).
// The iteration stops at the first error, which it yields with a zero item.
func pages[T any](ctx context.Context, fetch func(ctx context.Context, token string) ([]T, string, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		token := ""
		for {
			items, next, err := fetch(ctx, token)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, it := range items {
				if !yield(it, nil) {
					return
				}
			}
			if next == "" || next == token {
				return
			}
			token = next
		}
	}
}

// Instances iterates over a project's instances, following next_page_token
// from page to page (opts.PageToken is where it starts, opts.PageSize the
// size of each page):
//
//	for inst, err := range client.Instances(ctx, "default", nil) {
//		if err != nil { return err }
//		fmt.Println(inst.Name)
//	}
func (c *Client) Instances(ctx context.Context, project string, opts *ListInstancesOptions) iter.Seq2[Instance, error] {
	o := ListInstancesOptions{}
	if opts != nil {
		o = *opts
	}
	return pages(ctx, func(ctx context.Context, token string) ([]Instance, string, error) {
		if token != "" {
			o.PageToken = token
		}
		l, err := c.ListInstances(ctx, project, &o)
		if err != nil {
			return nil, "", err
		}
		return l.Items, l.NextPageToken, nil
	})
}

// AccessTokens iterates over the caller's personal access tokens, page by page.
func (c *Client) AccessTokens(ctx context.Context, opts *PageOptions) iter.Seq2[AccessToken, error] {
	o := PageOptions{}
	if opts != nil {
		o = *opts
	}
	return pages(ctx, func(ctx context.Context, token string) ([]AccessToken, string, error) {
		if token != "" {
			o.PageToken = token
		}
		l, err := c.ListAccessTokens(ctx, &o)
		if err != nil {
			return nil, "", err
		}
		return l.Items, l.NextPageToken, nil
	})
}

// AuditEvents iterates over a project's audit log, newest first, page by page.
func (c *Client) AuditEvents(ctx context.Context, project string, opts *AuditEventsOptions) iter.Seq2[AuditEvent, error] {
	o := AuditEventsOptions{}
	if opts != nil {
		o = *opts
	}
	return pages(ctx, func(ctx context.Context, token string) ([]AuditEvent, string, error) {
		if token != "" {
			o.PageToken = token
		}
		l, err := c.ListAuditEvents(ctx, project, &o)
		if err != nil {
			return nil, "", err
		}
		return l.Items, l.NextPageToken, nil
	})
}

// Events iterates over an instance's service log as it is now, oldest
// first, page by page (the event list's next_page_token is the After of
// the next page). FollowEvents also waits for new events.
func (c *Client) Events(ctx context.Context, project, name string, opts *ListEventsOptions) iter.Seq2[ServiceEvent, error] {
	o := ListEventsOptions{}
	if opts != nil {
		o = *opts
	}
	return pages(ctx, func(ctx context.Context, token string) ([]ServiceEvent, string, error) {
		if token != "" {
			o.After = token
		}
		l, err := c.ListEvents(ctx, project, name, &o)
		if err != nil {
			return nil, "", err
		}
		return l.Items, l.NextPageToken, nil
	})
}
