package strata_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	strata "github.com/strata-db/strata/sdk/go"
)

func TestServiceAndDiscovery(t *testing.T) {
	t.Parallel()
	c := newClient(t) // no credentials: these need none
	ctx := testContext(t, 30*time.Second)
	if h, err := c.Health(ctx); err != nil || h.Status == "" {
		t.Fatalf("Health = %+v, %v", h, err)
	}
	if h, err := c.Ready(ctx); err != nil || h.Status == "" {
		t.Fatalf("Ready = %+v, %v", h, err)
	}
	conf, err := c.OpenIDConfiguration(ctx)
	if err != nil || conf["issuer"] == nil || conf["jwks_uri"] == nil {
		t.Fatalf("OpenIDConfiguration = %v, %v", conf, err)
	}
	jwks, err := c.JWKS(ctx)
	if err != nil {
		t.Fatalf("JWKS: %v", err)
	}
	if keys, _ := jwks["keys"].([]any); len(keys) == 0 {
		t.Fatalf("JWKS has no keys: %v", jwks)
	}
	if _, err := c.Me(ctx); !errors.Is(err, strata.ErrNoCredentials) {
		t.Fatalf("Me without credentials = %v, want ErrNoCredentials", err)
	}
}

func TestCatalogProjectsAndMe(t *testing.T) {
	t.Parallel()
	c := adminClient(t)
	ctx := testContext(t, 30*time.Second)
	me, err := c.Me(ctx)
	if err != nil || me.Username != "admin" || !me.Admin || me.ID == "" {
		t.Fatalf("Me = %+v, %v", me, err)
	}
	plans, err := c.ListPlans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range plans {
		ids = append(ids, p.ID)
		if p.StorageGBMin < 1 || p.StorageGBMax < p.StorageGBMin || p.MemoryMB == 0 {
			t.Errorf("plan %+v", p)
		}
	}
	for _, want := range []string{"micro", "small", "medium", "large"} {
		if !slices.Contains(ids, want) {
			t.Errorf("ListPlans = %v, want %s among them", ids, want)
		}
	}
	versions, err := c.ListVersions(ctx)
	if err != nil || len(versions) == 0 {
		t.Fatalf("ListVersions = %v, %v", versions, err)
	}
	defaults := 0
	for _, v := range versions {
		if v.Default {
			defaults++
		}
	}
	if defaults != 1 {
		t.Errorf("ListVersions = %+v: want exactly one default", versions)
	}
	name := uniqueName("proj")
	p, err := c.CreateProject(ctx, name)
	if err != nil || p.Name != name || p.CreatedAt.IsZero() {
		t.Fatalf("CreateProject = %+v, %v", p, err)
	}
	projects, err := c.ListProjects(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range projects {
		names = append(names, p.Name)
	}
	if !slices.Contains(names, "default") || !slices.Contains(names, name) {
		t.Fatalf("ListProjects = %v, want default and %s", names, name)
	}
	if _, err := c.CreateProject(ctx, name); !strata.IsConflict(err) {
		t.Fatalf("CreateProject of a taken name = %v, want 409", err)
	}
	report, err := c.VerifyAuditChain(ctx)
	if err != nil || !report.OK || report.Events == 0 || report.FirstBroken != nil {
		t.Fatalf("VerifyAuditChain = %+v, %v", report, err)
	}
}

func TestInstanceLifecycle(t *testing.T) {
	t.Parallel()
	c := adminClient(t)
	ctx := testContext(t, 3*time.Minute)
	name := uniqueName("life")
	created, err := c.CreateInstance(ctx, "default", strata.CreateInstanceRequest{
		Name: name, Plan: "micro", StorageGB: 1, ACL: []string{"127.0.0.0/8"},
		Labels: map[string]string{"team": "sdk"},
	})
	if err != nil {
		t.Fatalf("CreateInstance: %v", err)
	}
	if created.Name != name || created.Project != "default" || created.Plan != "micro" || created.StorageGB != 1 ||
		created.Engine != "postgresql" || created.ID == "" || created.Labels["team"] != "sdk" ||
		!slices.Equal(created.ACL, []string{"127.0.0.0/8"}) {
		t.Fatalf("CreateInstance = %+v", created)
	}
	ready, err := c.WaitForPhase(ctx, "default", name, strata.PhaseReady)
	if err != nil {
		t.Fatalf("WaitForPhase Ready: %v", err)
	}
	if ready.Status.Endpoint == nil || ready.Status.Endpoint.Port == 0 || len(ready.Status.Conditions) == 0 {
		t.Fatalf("a Ready instance without endpoint or conditions: %+v", ready.Status)
	}
	got, err := c.GetInstance(ctx, "default", name)
	if err != nil || got.ID != created.ID || got.Status.Phase != strata.PhaseReady {
		t.Fatalf("GetInstance = %+v, %v", got, err)
	}

	creds, err := c.GetCredentials(ctx, "default", name)
	if err != nil {
		t.Fatalf("GetCredentials: %v", err)
	}
	if creds.Password == "" || creds.Port != ready.Status.Endpoint.Port || !strings.HasPrefix(creds.URI, "postgresql://") {
		t.Fatalf("GetCredentials = %v (uri %q)", creds, creds.URI)
	}
	if s := fmt.Sprintf("%v %+v %#v", *creds, *creds, *creds); strings.Contains(s, creds.Password) {
		t.Fatalf("printing Credentials shows the password: %s", s)
	}
	tlsConf, err := creds.TLSConfig()
	if err != nil {
		t.Fatalf("TLSConfig: %v", err)
	}
	if err := postgresTLSHandshake(creds, tlsConf); err != nil {
		t.Fatalf("a TLS handshake with the instance, verified against the CA of its credentials: %v", err)
	}
	other := tlsConf.Clone()
	other.RootCAs = x509.NewCertPool()
	if err := postgresTLSHandshake(creds, other); err == nil {
		t.Fatalf("a TLS handshake that trusts no CA succeeded: the check proves nothing")
	}

	updated, err := c.UpdateInstance(ctx, "default", name, strata.UpdateInstanceRequest{
		StorageGB: 2, Labels: map[string]string{"team": "sdk", "tier": "gold"}, ACL: []string{},
	})
	if err != nil {
		t.Fatalf("UpdateInstance: %v", err)
	}
	if updated.StorageGB != 2 || updated.Labels["tier"] != "gold" || len(updated.ACL) != 0 {
		t.Fatalf("UpdateInstance = %+v", updated)
	}
	if _, err := c.WaitForPhase(ctx, "default", name, strata.PhaseReady); err != nil {
		t.Fatalf("WaitForPhase after the update: %v", err)
	}
	if _, err := c.UpdateInstance(ctx, "default", name, strata.UpdateInstanceRequest{StorageGB: 1}); !strata.IsConflict(err) {
		t.Fatalf("shrinking the storage = %v, want 409", err)
	}

	rotated, err := c.RotateCredentials(ctx, "default", name)
	if err != nil || rotated.Password == "" || rotated.Password == creds.Password {
		t.Fatalf("RotateCredentials: %v (the password changed: %t)", err, err == nil && rotated.Password != creds.Password)
	}

	var kinds []strata.EventKind
	for ev, err := range c.Events(ctx, "default", name, nil) {
		if err != nil {
			t.Fatalf("Events: %v", err)
		}
		kinds = append(kinds, ev.Kind)
		if ev.Kind == strata.EventPhaseChanged && ev.To == nil {
			t.Errorf("a phase change without to: %+v", ev)
		}
	}
	for _, want := range []strata.EventKind{strata.EventPhaseChanged, strata.EventUpdated, strata.EventCredentialsRotated} {
		if !slices.Contains(kinds, want) {
			t.Errorf("the service log %v has no %s", kinds, want)
		}
	}

	deleted, err := c.DeleteInstance(ctx, "default", name)
	if err != nil || deleted.Status.Phase != strata.PhaseDeleting {
		t.Fatalf("DeleteInstance = %+v, %v", deleted, err)
	}
	if err := c.WaitForDeletion(ctx, "default", name); err != nil {
		t.Fatalf("WaitForDeletion: %v", err)
	}
	if _, err := c.GetInstance(ctx, "default", name); !strata.IsNotFound(err) {
		t.Fatalf("GetInstance after the deletion = %v, want 404", err)
	}
}

// postgresTLSHandshake asks the PostgreSQL server at the credentials'
// endpoint for TLS (SSLRequest) and completes the handshake with conf.
func postgresTLSHandshake(creds *strata.Credentials, conf *tls.Config) error {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(creds.Host, strconv.Itoa(creds.Port)), 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil { // SSLRequest
		return err
	}
	answer := make([]byte, 1)
	if _, err := io.ReadFull(conn, answer); err != nil {
		return err
	}
	if answer[0] != 'S' {
		return fmt.Errorf("the server answered %q to SSLRequest, not S", answer)
	}
	return tls.Client(conn, conf).Handshake()
}

func TestWaitForPhaseEndsWithTheContext(t *testing.T) {
	t.Parallel()
	c := adminClient(t)
	name := uniqueName("wait")
	readyInstance(t, c, "default", strata.CreateInstanceRequest{Name: name, Plan: "micro"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	inst, err := c.WaitForPhase(ctx, "default", name, strata.PhaseUpdating)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForPhase of a phase that never comes = %v, %v; want DeadlineExceeded", inst, err)
	}
	if inst != nil && inst.Status.Phase != strata.PhaseReady {
		t.Fatalf("WaitForPhase ended with the instance %s, want it as last seen (Ready)", inst.Status.Phase)
	}
	if waited := time.Since(start); waited < 1500*time.Millisecond {
		t.Fatalf("WaitForPhase gave up after %v, before the deadline", waited)
	}
	if _, err := c.WaitForPhase(testContext(t, 10*time.Second), "default", "no-such-instance", strata.PhaseReady); !strata.IsNotFound(err) {
		t.Fatalf("WaitForPhase of a missing instance = %v, want 404", err)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	c := adminClient(t)
	ctx := testContext(t, time.Minute)

	_, err := c.GetInstance(ctx, "default", "no-such-instance")
	var apiErr *strata.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("GetInstance of a missing instance = %v, want *APIError", err)
	}
	if !strata.IsNotFound(err) || strata.IsConflict(err) || strata.IsForbidden(err) ||
		apiErr.StatusCode != http.StatusNotFound || apiErr.Status != http.StatusNotFound ||
		apiErr.Type == "" || apiErr.Title == "" || apiErr.Detail == "" || apiErr.RequestID == "" {
		t.Fatalf("404 problem = %#v", apiErr)
	}
	if !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), apiErr.Detail) {
		t.Errorf("Error() = %q", err)
	}
	wrapped := fmt.Errorf("ordering: %w", err)
	if !strata.IsNotFound(wrapped) {
		t.Errorf("IsNotFound does not see through wrapping")
	}

	_, err = c.CreateInstance(ctx, "default", strata.CreateInstanceRequest{Name: "Not_A_Label", StorageGB: 5000})
	if !strata.IsBadRequest(err) || !errors.As(err, &apiErr) {
		t.Fatalf("CreateInstance with a bad name = %v, want 400", err)
	}
	var fields []string
	for _, f := range apiErr.Errors {
		fields = append(fields, f.Field)
		if f.Message == "" {
			t.Errorf("field error without a message: %+v", f)
		}
	}
	if !slices.Contains(fields, "name") {
		t.Errorf("400 names fields %v, want name among them", fields)
	}

	// Idempotency-Key: the same key and body give the same instance once;
	// the same key with another body is refused with 422.
	name := uniqueName("idem")
	key := "sdk-test-" + name
	first, err := c.CreateInstance(ctx, "default", strata.CreateInstanceRequest{Name: name, Plan: "micro", IdempotencyKey: key})
	if err != nil {
		t.Fatalf("CreateInstance: %v", err)
	}
	t.Cleanup(func() { deleteInstance(t, c, "default", name) })
	again, err := c.CreateInstance(ctx, "default", strata.CreateInstanceRequest{Name: name, Plan: "micro", IdempotencyKey: key})
	if err != nil || again.ID != first.ID {
		t.Fatalf("the same create with the same Idempotency-Key = %+v, %v; want instance %s again", again, err, first.ID)
	}
	_, err = c.CreateInstance(ctx, "default", strata.CreateInstanceRequest{Name: name, Plan: "small", IdempotencyKey: key})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("another body with the same Idempotency-Key = %v, want 422", err)
	}
	_, err = c.CreateInstance(ctx, "default", strata.CreateInstanceRequest{Name: name, Plan: "micro"})
	if !strata.IsConflict(err) {
		t.Fatalf("a taken instance name = %v, want 409", err)
	}

	bad := newClient(t, strata.WithAccessToken("strata_pat_notatoken"))
	if _, err := bad.Me(ctx); !strata.IsUnauthorized(err) {
		t.Fatalf("Me with a bad token = %v, want 401", err)
	}
	if _, err := c.SignIn(ctx, "admin", "not the password"); !strata.IsUnauthorized(err) {
		t.Fatalf("SignIn with a wrong password = %v, want 401", err)
	}
}

func TestUsersMembersAndRoles(t *testing.T) {
	t.Parallel()
	c := adminClient(t)
	ctx := testContext(t, 2*time.Minute)
	username := uniqueName("dana")
	password := randomText(20)
	req := strata.CreateUserRequest{Username: username, Password: password}
	if s := fmt.Sprintf("%v %+v %#v", req, req, req); strings.Contains(s, password) {
		t.Fatalf("printing CreateUserRequest shows the password: %s", s)
	}
	u, err := c.CreateUser(ctx, req)
	if err != nil || u.Username != username || u.Admin || u.ID == "" {
		t.Fatalf("CreateUser = %+v, %v", u, err)
	}
	users, err := c.ListUsers(ctx)
	if err != nil || !slices.ContainsFunc(users, func(x strata.User) bool { return x.Username == username }) {
		t.Fatalf("ListUsers = %v, %v; want %s among them", users, err, username)
	}

	project := uniqueName("team")
	if _, err := c.CreateProject(ctx, project); err != nil {
		t.Fatal(err)
	}
	m, err := c.AddMember(ctx, project, username, strata.RoleViewer)
	if err != nil || m.User != username || m.Role != strata.RoleViewer {
		t.Fatalf("AddMember = %+v, %v", m, err)
	}
	inst := readyInstance(t, c, project, strata.CreateInstanceRequest{Name: "shared", Plan: "micro"})

	dana := newClient(t, strata.WithPassword(username, password))
	list, err := dana.ListInstances(ctx, project, nil)
	if err != nil || len(list.Items) != 1 || list.Items[0].ID != inst.ID {
		t.Fatalf("a viewer's ListInstances = %+v, %v", list, err)
	}
	if _, err := dana.DeleteInstance(ctx, project, "shared"); !strata.IsForbidden(err) {
		t.Fatalf("a viewer's DeleteInstance = %v, want 403", err)
	}
	if _, err := dana.GetCredentials(ctx, project, "shared"); !strata.IsForbidden(err) {
		t.Fatalf("a viewer's GetCredentials = %v, want 403", err)
	}
	if _, err := dana.CreateProject(ctx, uniqueName("nope")); !strata.IsForbidden(err) {
		t.Fatalf("a non-admin's CreateProject = %v, want 403", err)
	}
	if _, err := dana.ListInstances(ctx, "default", nil); !strata.IsNotFound(err) {
		t.Fatalf("ListInstances of a project without a role = %v, want 404", err)
	}
	me, err := dana.Me(ctx)
	if err != nil || me.Admin || len(me.Projects) != 1 || me.Projects[0] != (strata.ProjectRole{Project: project, Role: strata.RoleViewer}) {
		t.Fatalf("a viewer's Me = %+v, %v", me, err)
	}

	m, err = c.AddMember(ctx, project, username, strata.RoleEditor)
	if err != nil || m.Role != strata.RoleEditor {
		t.Fatalf("AddMember changing the role = %+v, %v", m, err)
	}
	if _, err := dana.GetCredentials(ctx, project, "shared"); err != nil {
		t.Fatalf("an editor's GetCredentials: %v", err)
	}
	members, err := c.ListMembers(ctx, project)
	if err != nil || len(members) != 1 || members[0].User != username || members[0].Role != strata.RoleEditor {
		t.Fatalf("ListMembers = %+v, %v", members, err)
	}
	if err := c.RemoveMember(ctx, project, username); err != nil {
		t.Fatalf("RemoveMember: %v", err)
	}
	if _, err := dana.GetInstance(ctx, project, "shared"); !strata.IsNotFound(err) {
		t.Fatalf("GetInstance after the removal = %v, want 404", err)
	}
	if err := c.DeleteUser(ctx, username); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	if err := c.DeleteUser(ctx, username); !strata.IsNotFound(err) {
		t.Fatalf("DeleteUser again = %v, want 404", err)
	}
}

func TestPersonalAccessTokens(t *testing.T) {
	t.Parallel()
	c := adminClient(t)
	ctx := testContext(t, time.Minute)
	created, err := c.CreateAccessToken(ctx, strata.CreateAccessTokenRequest{
		Name: "sdk-test " + uniqueName("pat"), Project: "default", Role: strata.RoleViewer, ExpiresInDays: 1,
	})
	if err != nil || !strings.HasPrefix(created.Token, "strata_pat_") || created.State != strata.TokenActive {
		t.Fatalf("CreateAccessToken = %v, %v", created, err)
	}
	if s := fmt.Sprintf("%v %+v %#v", *created, *created, *created); strings.Contains(s, created.Token) {
		t.Fatalf("printing CreatedToken shows the token: %s", s)
	}
	pat := newClient(t, strata.WithAccessToken(created.Token))
	if _, err := pat.ListInstances(ctx, "default", nil); err != nil {
		t.Fatalf("ListInstances with the token: %v", err)
	}
	if _, err := pat.CreateInstance(ctx, "default", strata.CreateInstanceRequest{Name: uniqueName("pat")}); !strata.IsForbidden(err) {
		t.Fatalf("a viewer token's CreateInstance = %v, want 403", err)
	}
	if _, err := pat.ListInstances(ctx, uniqueName("other"), nil); !strata.IsNotFound(err) {
		t.Fatalf("the token in another project = %v, want 404", err)
	}
	found := false
	for tok, err := range c.AccessTokens(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		found = found || tok.ID == created.ID
	}
	if !found {
		t.Fatalf("AccessTokens does not list %s", created.ID)
	}
	if err := c.RevokeAccessToken(ctx, created.ID); err != nil {
		t.Fatalf("RevokeAccessToken: %v", err)
	}
	if _, err := pat.ListInstances(ctx, "default", nil); !strata.IsUnauthorized(err) {
		t.Fatalf("a revoked token = %v, want 401", err)
	}
}

func TestOIDCClientCredentials(t *testing.T) {
	t.Parallel()
	ctx := testContext(t, time.Minute)
	before := idp.tokens.Load()
	c := newClient(t, strata.WithOIDCClientCredentials(strata.OIDCClientCredentials{
		Issuer: idp.URL, ClientID: idp.clientID, ClientSecret: idp.clientSecret, Audience: oidcAudience,
	}))
	me, err := c.Me(ctx)
	if err != nil {
		t.Fatalf("Me with an OIDC token: %v", err)
	}
	if me.Username != "oidc-"+idp.clientID || me.Admin {
		t.Fatalf("Me = %+v, want the user oidc-%s", me, idp.clientID)
	}
	// The group sdk-bots maps to editor of default.
	if _, err := c.ListInstances(ctx, "default", nil); err != nil {
		t.Fatalf("ListInstances as an editor from the group mapping: %v", err)
	}
	if got := idp.tokens.Load() - before; got != 1 {
		t.Fatalf("the provider issued %d tokens for two calls, want 1 (cached)", got)
	}
	wrong := newClient(t, strata.WithOIDCClientCredentials(strata.OIDCClientCredentials{
		Issuer: idp.URL, ClientID: idp.clientID, ClientSecret: "wrong", Audience: oidcAudience,
	}))
	if _, err := wrong.Me(ctx); err == nil || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("a wrong client secret = %v, want the provider's invalid_client", err)
	}
}

func TestPagination(t *testing.T) {
	t.Parallel()
	c := adminClient(t)
	ctx := testContext(t, 3*time.Minute)
	project := uniqueName("pages")
	if _, err := c.CreateProject(ctx, project); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 3 {
		name := fmt.Sprintf("db-%d", i)
		want = append(want, name)
		if _, err := c.CreateInstance(ctx, project, strata.CreateInstanceRequest{Name: name, Plan: "micro",
			Labels: map[string]string{"batch": "pages", "n": fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { deleteInstance(t, c, project, name) })
	}
	first, err := c.ListInstances(ctx, project, &strata.ListInstancesOptions{PageSize: 2})
	if err != nil || len(first.Items) != 2 || first.NextPageToken == "" {
		t.Fatalf("the first page of 2 = %+v, %v; want 2 items and a next page", first, err)
	}
	var got []string
	for inst, err := range c.Instances(ctx, project, &strata.ListInstancesOptions{PageSize: 2, Labels: map[string]string{"batch": "pages"}}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, inst.Name)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Instances over pages of 2 = %v, want %v", got, want)
	}
	got = nil
	for inst, err := range c.Instances(ctx, project, &strata.ListInstancesOptions{Labels: map[string]string{"batch": "pages", "n": "1"}}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, inst.Name)
	}
	if !slices.Equal(got, []string{"db-1"}) {
		t.Fatalf("Instances with two labels = %v, want [db-1]", got)
	}
	n := 0
	for range c.Instances(ctx, project, &strata.ListInstancesOptions{PageSize: 1}) {
		n++
		if n == 2 {
			break
		}
	}
	if n != 2 {
		t.Fatalf("breaking out of Instances after 2 items gave %d", n)
	}

	// The audit log: three creates, newest first, over pages of 2.
	page, err := c.ListAuditEvents(ctx, project, &strata.AuditEventsOptions{Action: "instance.create", PageSize: 2})
	if err != nil || len(page.Items) != 2 || page.NextPageToken == "" {
		t.Fatalf("the first audit page of 2 = %+v, %v", page, err)
	}
	var seqs []int64
	var targets []string
	for ev, err := range c.AuditEvents(ctx, project, &strata.AuditEventsOptions{Action: "instance.create", Actor: "admin",
		Since: time.Now().Add(-time.Hour), Until: time.Now().Add(time.Hour), PageSize: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Outcome.Result != strata.OutcomeSuccess || ev.Outcome.Status != http.StatusAccepted || ev.Hash == "" {
			t.Errorf("audit event %+v", ev)
		}
		seqs = append(seqs, ev.Seq)
		targets = append(targets, ev.Target.Name)
	}
	if len(seqs) != 3 || !slices.IsSortedFunc(seqs, func(a, b int64) int { return int(b - a) }) {
		t.Fatalf("AuditEvents over pages of 2 = seqs %v targets %v, want 3, newest first", seqs, targets)
	}
	if !slices.Equal(targets, []string{"db-2", "db-1", "db-0"}) {
		t.Fatalf("AuditEvents targets = %v", targets)
	}

	// The service log over pages of 1 is the log in one page.
	if _, err := c.WaitForPhase(ctx, project, "db-0", strata.PhaseReady); err != nil {
		t.Fatal(err)
	}
	all, err := c.ListEvents(ctx, project, "db-0", &strata.ListEventsOptions{PageSize: 500})
	if err != nil || len(all.Items) < 2 {
		t.Fatalf("ListEvents = %+v, %v; want at least 2 events", all, err)
	}
	var ids []string
	for ev, err := range c.Events(ctx, project, "db-0", &strata.ListEventsOptions{PageSize: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.ID)
	}
	var wantIDs []string
	for _, ev := range all.Items {
		wantIDs = append(wantIDs, ev.ID)
	}
	if !slices.Equal(ids, wantIDs) {
		t.Fatalf("Events over pages of 1 = %v, want %v", ids, wantIDs)
	}

	// Personal access tokens over pages of 1.
	var made []string
	for i := range 3 {
		tok, err := c.CreateAccessToken(ctx, strata.CreateAccessTokenRequest{Name: fmt.Sprintf("page %d %s", i, project), Project: project, Role: strata.RoleViewer})
		if err != nil {
			t.Fatal(err)
		}
		made = append(made, tok.ID)
		t.Cleanup(func() { _ = c.RevokeAccessToken(context.Background(), tok.ID) })
	}
	tp, err := c.ListAccessTokens(ctx, &strata.PageOptions{PageSize: 1})
	if err != nil || len(tp.Items) != 1 || tp.NextPageToken == "" {
		t.Fatalf("the first token page of 1 = %+v, %v", tp, err)
	}
	var listed []string
	for tok, err := range c.AccessTokens(ctx, &strata.PageOptions{PageSize: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		if tok.Project == project {
			listed = append(listed, tok.ID)
		}
	}
	slices.Sort(listed)
	slices.Sort(made)
	if !slices.Equal(listed, made) {
		t.Fatalf("AccessTokens over pages of 1 = %v, want %v", listed, made)
	}
}
