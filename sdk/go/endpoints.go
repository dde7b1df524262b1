package strata

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"
)

// get is a GET of path that needs a token.
func (c *Client) get(ctx context.Context, path string, q url.Values, out any) error {
	return c.do(ctx, request{method: http.MethodGet, path: path, query: q, auth: true, idempotent: true}, out)
}

// ---- Service and discovery ----

// Health asks whether the API process is alive (GET /healthz, no token).
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var h Health
	return &h, c.do(ctx, request{method: http.MethodGet, path: "/healthz", idempotent: true}, &h)
}

// Ready asks whether the API can serve requests (GET /readyz, no token); a
// 503 answer is returned as *APIError after the retries.
func (c *Client) Ready(ctx context.Context) (*Health, error) {
	var h Health
	return &h, c.do(ctx, request{method: http.MethodGet, path: "/readyz", idempotent: true}, &h)
}

// OpenIDConfiguration returns Strata's own OpenID Connect discovery document
// (GET /.well-known/openid-configuration, no token).
func (c *Client) OpenIDConfiguration(ctx context.Context) (map[string]any, error) {
	var m map[string]any
	return m, c.do(ctx, request{method: http.MethodGet, path: "/.well-known/openid-configuration", idempotent: true}, &m)
}

// JWKS returns the keys Strata signs its access tokens with (GET
// /.well-known/jwks.json, no token).
func (c *Client) JWKS(ctx context.Context) (map[string]any, error) {
	var m map[string]any
	return m, c.do(ctx, request{method: http.MethodGet, path: "/.well-known/jwks.json", idempotent: true}, &m)
}

// ---- Authentication ----

// SignIn exchanges a user name and password for an access and a refresh
// token (POST /v1/auth/token). WithPassword does this for you.
func (c *Client) SignIn(ctx context.Context, username, password string) (*TokenResponse, error) {
	var tr TokenResponse
	return &tr, c.do(ctx, request{method: http.MethodPost, path: "/v1/auth/token",
		body: tokenRequest{Username: username, Password: password}}, &tr)
}

// RefreshToken exchanges a refresh token for a new pair (POST
// /v1/auth/refresh); the old refresh token is used up.
func (c *Client) RefreshToken(ctx context.Context, refreshToken string) (*TokenResponse, error) {
	var tr TokenResponse
	return &tr, c.do(ctx, request{method: http.MethodPost, path: "/v1/auth/refresh",
		body: refreshRequest{RefreshToken: refreshToken}}, &tr)
}

// SignOut ends the sign-in a refresh token belongs to (POST
// /v1/auth/logout). See also SignOutSession.
func (c *Client) SignOut(ctx context.Context, refreshToken string) error {
	return c.do(ctx, request{method: http.MethodPost, path: "/v1/auth/logout",
		body: refreshRequest{RefreshToken: refreshToken}}, nil)
}

// Me returns the caller, whether it is a platform admin and its projects
// with its roles (GET /v1/me).
func (c *Client) Me(ctx context.Context) (*Me, error) {
	var m Me
	return &m, c.get(ctx, "/v1/me", nil, &m)
}

// ---- Personal access tokens ----

// PageOptions selects one page of a list.
type PageOptions struct {
	// PageSize is 1–500; 0 means the server's default (100).
	PageSize int
	// PageToken is the previous page's NextPageToken; empty for the first page.
	PageToken string
}

func (o *PageOptions) values() url.Values {
	q := url.Values{}
	if o == nil {
		return q
	}
	if o.PageSize > 0 {
		q.Set("page_size", strconv.Itoa(o.PageSize))
	}
	if o.PageToken != "" {
		q.Set("page_token", o.PageToken)
	}
	return q
}

// ListAccessTokens returns one page of the caller's personal access tokens
// (GET /v1/tokens). AccessTokens iterates over all of them.
func (c *Client) ListAccessTokens(ctx context.Context, opts *PageOptions) (*AccessTokenList, error) {
	var l AccessTokenList
	return &l, c.get(ctx, "/v1/tokens", opts.values(), &l)
}

// CreateAccessToken makes a personal access token for one project and a
// role no larger than the caller's (POST /v1/tokens). The token is in the
// answer only; it needs a password or OIDC sign-in, not another token.
func (c *Client) CreateAccessToken(ctx context.Context, req CreateAccessTokenRequest) (*CreatedToken, error) {
	var t CreatedToken
	return &t, c.do(ctx, request{method: http.MethodPost, path: "/v1/tokens", body: req, auth: true}, &t)
}

// RevokeAccessToken makes a personal access token stop working (DELETE
// /v1/tokens/{id}).
func (c *Client) RevokeAccessToken(ctx context.Context, id string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/v1/tokens/" + seg(id), auth: true, idempotent: true}, nil)
}

// ---- Catalog ----

// ListPlans returns the plans on offer (GET /v1/plans).
func (c *Client) ListPlans(ctx context.Context) ([]Plan, error) {
	var l planList
	return l.Items, c.get(ctx, "/v1/plans", nil, &l)
}

// ListVersions returns the PostgreSQL versions on offer (GET /v1/versions).
func (c *Client) ListVersions(ctx context.Context) ([]Version, error) {
	var l versionList
	return l.Items, c.get(ctx, "/v1/versions", nil, &l)
}

// ---- Users (platform admins) ----

// ListUsers returns every user (GET /v1/users; platform admins).
func (c *Client) ListUsers(ctx context.Context) ([]User, error) {
	var l userList
	return l.Items, c.get(ctx, "/v1/users", nil, &l)
}

// CreateUser creates a user (POST /v1/users; platform admins).
func (c *Client) CreateUser(ctx context.Context, req CreateUserRequest) (*User, error) {
	var u User
	return &u, c.do(ctx, request{method: http.MethodPost, path: "/v1/users", body: req, auth: true}, &u)
}

// DeleteUser deletes a user, its memberships and tokens (DELETE
// /v1/users/{username}; platform admins).
func (c *Client) DeleteUser(ctx context.Context, username string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/v1/users/" + seg(username), auth: true, idempotent: true}, nil)
}

// ---- Projects and members ----

// ListProjects returns the projects the caller sees (GET /v1/projects).
func (c *Client) ListProjects(ctx context.Context) ([]Project, error) {
	var l projectList
	return l.Items, c.get(ctx, "/v1/projects", nil, &l)
}

// CreateProject creates a project (POST /v1/projects; platform admins). The
// creator is not made a member: add an owner with AddMember.
func (c *Client) CreateProject(ctx context.Context, name string) (*Project, error) {
	var p Project
	return &p, c.do(ctx, request{method: http.MethodPost, path: "/v1/projects", body: createProject{Name: name}, auth: true}, &p)
}

// ListMembers returns who has which role in a project (GET
// /v1/projects/{project}/members; owners).
func (c *Client) ListMembers(ctx context.Context, project string) ([]Member, error) {
	var l memberList
	return l.Items, c.get(ctx, "/v1/projects/"+seg(project)+"/members", nil, &l)
}

// AddMember gives user a role in a project, or changes the role it has
// (POST /v1/projects/{project}/members; owners).
func (c *Client) AddMember(ctx context.Context, project, user string, role Role) (*Member, error) {
	var m Member
	// Setting a role is idempotent: the same request gives the same membership.
	return &m, c.do(ctx, request{method: http.MethodPost, path: "/v1/projects/" + seg(project) + "/members",
		body: addMember{User: user, Role: role}, auth: true, idempotent: true}, &m)
}

// RemoveMember takes a user's role in a project away (DELETE
// /v1/projects/{project}/members/{user}; owners).
func (c *Client) RemoveMember(ctx context.Context, project, user string) error {
	return c.do(ctx, request{method: http.MethodDelete, path: "/v1/projects/" + seg(project) + "/members/" + seg(user),
		auth: true, idempotent: true}, nil)
}

// ---- Instances ----

// ListInstancesOptions filters and pages ListInstances and Instances.
type ListInstancesOptions struct {
	// Labels: only instances that carry every one of these labels.
	Labels map[string]string
	// PageSize is 1–500; 0 means the server's default (100).
	PageSize int
	// PageToken is the previous page's NextPageToken.
	PageToken string
}

func (o *ListInstancesOptions) values() url.Values {
	if o == nil {
		return url.Values{}
	}
	q := (&PageOptions{PageSize: o.PageSize, PageToken: o.PageToken}).values()
	keys := make([]string, 0, len(o.Labels))
	for k := range o.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		q.Add("label", k+"="+o.Labels[k])
	}
	return q
}

func instancePath(project, name string) string {
	return "/v1/projects/" + seg(project) + "/instances/" + seg(name)
}

// ListInstances returns one page of a project's instances (GET
// /v1/projects/{project}/instances). Instances iterates over all pages.
func (c *Client) ListInstances(ctx context.Context, project string, opts *ListInstancesOptions) (*InstanceList, error) {
	var l InstanceList
	return &l, c.get(ctx, "/v1/projects/"+seg(project)+"/instances", opts.values(), &l)
}

// CreateInstance orders a PostgreSQL instance (POST
// /v1/projects/{project}/instances). It answers at once with the instance
// in phase Provisioning; wait for it with WaitForPhase. Each call carries
// an Idempotency-Key (req.IdempotencyKey, or a random one), so retries
// never create a second instance.
func (c *Client) CreateInstance(ctx context.Context, project string, req CreateInstanceRequest) (*Instance, error) {
	key := req.IdempotencyKey
	if key == "" {
		key = c.newKey()
	}
	var i Instance
	return &i, c.do(ctx, request{method: http.MethodPost, path: "/v1/projects/" + seg(project) + "/instances",
		body: req, header: http.Header{"Idempotency-Key": {key}}, auth: true, idempotent: true}, &i)
}

// GetInstance returns one instance (GET /v1/projects/{project}/instances/{name}).
func (c *Client) GetInstance(ctx context.Context, project, name string) (*Instance, error) {
	var i Instance
	return &i, c.get(ctx, instancePath(project, name), nil, &i)
}

// UpdateInstance changes plan, storage (grow only), ACL, labels or external
// access (PATCH /v1/projects/{project}/instances/{name}). It answers with
// the instance in phase Updating; wait with WaitForPhase.
func (c *Client) UpdateInstance(ctx context.Context, project, name string, req UpdateInstanceRequest) (*Instance, error) {
	var i Instance
	// Not resent after a network error: had the first PATCH arrived, the
	// second would meet the instance Updating and answer 409.
	return &i, c.do(ctx, request{method: http.MethodPatch, path: instancePath(project, name), body: req, auth: true}, &i)
}

// DeleteInstance deletes an instance and its data (DELETE
// /v1/projects/{project}/instances/{name}). It answers with the instance in
// phase Deleting; WaitForDeletion waits until it is gone.
func (c *Client) DeleteInstance(ctx context.Context, project, name string) (*Instance, error) {
	var i Instance
	return &i, c.do(ctx, request{method: http.MethodDelete, path: instancePath(project, name), auth: true, idempotent: true}, &i)
}

// GetCredentials returns the connection data of an instance (GET
// …/credentials; editors). The read is audited.
func (c *Client) GetCredentials(ctx context.Context, project, name string) (*Credentials, error) {
	var cr Credentials
	return &cr, c.get(ctx, instancePath(project, name)+"/credentials", nil, &cr)
}

// RotateCredentials sets a new password; the old one stops working (POST
// …/credentials/rotate; editors). Not retried after a network error, since
// a second rotation would change the password again.
func (c *Client) RotateCredentials(ctx context.Context, project, name string) (*Credentials, error) {
	var cr Credentials
	return &cr, c.do(ctx, request{method: http.MethodPost, path: instancePath(project, name) + "/credentials/rotate", auth: true}, &cr)
}

// ListEventsOptions pages ListEvents and Events.
type ListEventsOptions struct {
	// After: only events after this event id (the previous page's NextPageToken).
	After string
	// PageSize is 1–500; 0 means the server's default (100).
	PageSize int
}

// ListEvents returns one page of an instance's service log, oldest first
// (GET …/events). Events iterates over all pages; FollowEvents streams.
func (c *Client) ListEvents(ctx context.Context, project, name string, opts *ListEventsOptions) (*EventList, error) {
	q := url.Values{}
	if opts != nil {
		if opts.After != "" {
			q.Set("after", opts.After)
		}
		if opts.PageSize > 0 {
			q.Set("page_size", strconv.Itoa(opts.PageSize))
		}
	}
	var l EventList
	return &l, c.get(ctx, instancePath(project, name)+"/events", q, &l)
}

// ---- Audit ----

// AuditEventsOptions filters and pages ListAuditEvents and AuditEvents.
type AuditEventsOptions struct {
	// Instance: only events about this instance.
	Instance string
	// Action: only this action, e.g. "instance.create".
	Action string
	// Actor: only events of this user name.
	Actor string
	// Since: only events at or after this time.
	Since time.Time
	// Until: only events before this time.
	Until time.Time
	// PageSize is 1–500; 0 means the server's default (100).
	PageSize int
	// PageToken is the previous page's NextPageToken.
	PageToken string
}

func (o *AuditEventsOptions) values() url.Values {
	if o == nil {
		return url.Values{}
	}
	q := (&PageOptions{PageSize: o.PageSize, PageToken: o.PageToken}).values()
	for k, v := range map[string]string{"instance": o.Instance, "action": o.Action, "actor": o.Actor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !o.Since.IsZero() {
		q.Set("since", o.Since.UTC().Format(time.RFC3339Nano))
	}
	if !o.Until.IsZero() {
		q.Set("until", o.Until.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// ListAuditEvents returns one page of a project's audit log, newest first
// (GET /v1/projects/{project}/audit-events; viewers). AuditEvents iterates.
func (c *Client) ListAuditEvents(ctx context.Context, project string, opts *AuditEventsOptions) (*AuditEventList, error) {
	var l AuditEventList
	return &l, c.get(ctx, "/v1/projects/"+seg(project)+"/audit-events", opts.values(), &l)
}

// VerifyAuditChain walks the whole hash-chained audit log and reports the
// first broken link, if any (GET /v1/admin/audit/verify; platform admins).
func (c *Client) VerifyAuditChain(ctx context.Context) (*ChainReport, error) {
	var r ChainReport
	return &r, c.get(ctx, "/v1/admin/audit/verify", nil, &r)
}
