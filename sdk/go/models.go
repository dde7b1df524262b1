package strata

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// The types in this file mirror the schemas of api/openapi.json, one Go type
// a schema, one field a property (TestModelsMatchTheDocument fails on drift).

// Phase is where an instance is in its life.
type Phase string

// The phases of an instance.
const (
	PhaseProvisioning Phase = "Provisioning"
	PhaseReady        Phase = "Ready"
	PhaseUpdating     Phase = "Updating"
	PhaseFailed       Phase = "Failed"
	PhaseDeleting     Phase = "Deleting"
)

// Role is a user's role in one project. Each role includes the ones before it.
type Role string

// The roles of a project member.
const (
	RoleViewer Role = "viewer"
	RoleEditor Role = "editor"
	RoleOwner  Role = "owner"
)

// ConditionStatus is the status of a Condition.
type ConditionStatus string

// The statuses of a condition.
const (
	ConditionTrue    ConditionStatus = "True"
	ConditionFalse   ConditionStatus = "False"
	ConditionUnknown ConditionStatus = "Unknown"
)

// EventKind is the kind of a service event (and the SSE event name).
type EventKind string

// The kinds of service events.
const (
	EventPhaseChanged       EventKind = "phase_changed"
	EventProvisioningStep   EventKind = "provisioning_step"
	EventUpdated            EventKind = "updated"
	EventRestarted          EventKind = "restarted"
	EventFailed             EventKind = "failed"
	EventCredentialsRotated EventKind = "credentials_rotated"
	EventStorageQuota       EventKind = "storage_quota"
)

// Severity is how much a service event matters.
type Severity string

// The severities of service events.
const (
	SeverityInfo    Severity = "info"
	SeverityWarning Severity = "warning"
	SeverityError   Severity = "error"
)

// TokenState is the state of a personal access token.
type TokenState string

// The states of a personal access token.
const (
	TokenActive  TokenState = "active"
	TokenExpired TokenState = "expired"
	TokenRevoked TokenState = "revoked"
)

// OutcomeResult says whether an audited request succeeded.
type OutcomeResult string

// The results of an audited request.
const (
	OutcomeSuccess OutcomeResult = "success"
	OutcomeFailure OutcomeResult = "failure"
)

// Endpoint is where clients connect to an instance.
type Endpoint struct {
	// Host is an address or DNS name.
	Host string `json:"host"`
	// Port is the TCP port.
	Port int `json:"port"`
}

// Condition is a Kubernetes-style condition of an instance: its transition
// time changes only when its status does.
type Condition struct {
	// Type is Ready, Progressing or StorageWithinQuota.
	Type string `json:"type"`
	// Status is True, False or Unknown.
	Status ConditionStatus `json:"status"`
	// Reason is a CamelCase word for the status.
	Reason string `json:"reason"`
	// Message explains the status.
	Message string `json:"message"`
	// LastTransitionTime is when Status last changed.
	LastTransitionTime time.Time `json:"last_transition_time"`
}

// InstanceStatus is what Strata observed of an instance.
type InstanceStatus struct {
	// Phase is where the instance is in its life.
	Phase Phase `json:"phase"`
	// Message says what is happening now, or why it failed.
	Message string `json:"message"`
	// Endpoint is where clients connect, once known.
	Endpoint *Endpoint `json:"endpoint,omitempty"`
	// ExternalEndpoint is where clients outside the cluster connect (only
	// with ExternalAccess, once the load balancer has an address).
	ExternalEndpoint *Endpoint `json:"external_endpoint,omitempty"`
	// Conditions are the instance's conditions.
	Conditions []Condition `json:"conditions"`
	// StorageUsedBytes is what the data directory takes on disk, when measured.
	StorageUsedBytes *int64 `json:"storage_used_bytes,omitempty"`
}

// Instance is a PostgreSQL instance as the API returns it.
type Instance struct {
	// ID is the instance's UUID.
	ID string `json:"id"`
	// Name is unique in the project and immutable.
	Name string `json:"name"`
	// Project is the project the instance belongs to.
	Project string `json:"project"`
	// Engine is always "postgresql".
	Engine string `json:"engine"`
	// Version is the PostgreSQL major version ("16").
	Version string `json:"version"`
	// Plan is the plan id (see ListPlans).
	Plan string `json:"plan"`
	// StorageGB is the storage quota in GiB.
	StorageGB int `json:"storage_gb"`
	// ACL lists the client networks (CIDR) allowed to connect.
	ACL []string `json:"acl"`
	// Labels are the instance's labels.
	Labels map[string]string `json:"labels"`
	// ExternalAccess is an endpoint outside the cluster, admitting the ACL's networks.
	ExternalAccess bool `json:"external_access,omitempty"`
	// Status is what Strata observed.
	Status InstanceStatus `json:"status"`
	// CreatedAt is when the instance was ordered.
	CreatedAt time.Time `json:"created_at"`
	// UpdatedAt is when it last changed.
	UpdatedAt time.Time `json:"updated_at"`
}

// InstanceList is one page of instances.
type InstanceList struct {
	// Items are the instances of this page.
	Items []Instance `json:"items"`
	// NextPageToken is passed as PageToken for the next page; empty on the last page.
	NextPageToken string `json:"next_page_token,omitempty"`
}

// CreateInstanceRequest is the body of CreateInstance. Only Name is
// required; Strata picks the smallest plan, the default version and the
// plan's minimum storage for what is left out.
type CreateInstanceRequest struct {
	// Name is a DNS label of at most 40 characters, unique in the project.
	Name string `json:"name"`
	// Plan is a plan id (see ListPlans).
	Plan string `json:"plan,omitempty"`
	// Version is a PostgreSQL major version (see ListVersions).
	Version string `json:"version,omitempty"`
	// StorageGB is the storage quota in GiB, within the plan's range.
	StorageGB int `json:"storage_gb,omitempty"`
	// ACL lists client networks (CIDR) allowed to connect; everyone (TLS
	// and password still required) when nil.
	ACL []string `json:"acl,omitempty"`
	// Labels are key/value pairs to find the instance by (ListInstancesOptions.Labels).
	Labels map[string]string `json:"labels,omitempty"`
	// ExternalAccess asks for an endpoint outside the cluster that admits
	// only the ACL's networks (the Kubernetes runtime only).
	ExternalAccess *bool `json:"external_access,omitempty"`

	// IdempotencyKey is sent as the Idempotency-Key header: the same key and
	// body give the same instance once. When empty, CreateInstance makes a
	// random key for the call, so that its own retries are safe.
	IdempotencyKey string `json:"-"`
}

// UpdateInstanceRequest is the body of UpdateInstance: every field is
// optional, and only fields that are set are changed.
type UpdateInstanceRequest struct {
	// Plan is the new plan id.
	Plan string `json:"plan,omitempty"`
	// StorageGB is the new storage quota (grow only).
	StorageGB int `json:"storage_gb,omitempty"`
	// ACL replaces the ACL when not nil; a non-nil empty slice clears it.
	ACL []string `json:"acl,omitzero"`
	// Labels replace all labels when not nil; a non-nil empty map removes them.
	Labels map[string]string `json:"labels,omitzero"`
	// ExternalAccess turns the external endpoint on or off.
	ExternalAccess *bool `json:"external_access,omitempty"`
}

// Credentials is the connection data of an instance's application role.
// Its String method leaves the password out, so that printing it by
// accident does not leak it.
type Credentials struct {
	// Username is the PostgreSQL role.
	Username string `json:"username"`
	// Password is the role's password.
	Password string `json:"password"`
	// Database is the database name.
	Database string `json:"database"`
	// Host is the server's address.
	Host string `json:"host"`
	// Port is the server's TCP port.
	Port int `json:"port"`
	// SSLMode is "require" or stricter: instances only accept TLS.
	SSLMode string `json:"sslmode"`
	// URI is a libpq URI with every part of the above.
	URI string `json:"uri"`
	// CACertificate is the PEM of the CA that signed the server certificate.
	CACertificate string `json:"ca_certificate"`
}

// String describes the credentials without the password.
func (c Credentials) String() string {
	return fmt.Sprintf("{username:%s password:REDACTED database:%s host:%s port:%d sslmode:%s}",
		c.Username, c.Database, c.Host, c.Port, c.SSLMode)
}

// GoString is String, for %#v.
func (c Credentials) GoString() string { return "strata.Credentials" + c.String() }

// TLSConfig returns a TLS configuration that trusts only the instance's CA
// and verifies the server's name (Host): the equivalent of libpq's
// sslmode=verify-full with sslrootcert. Hand it to a PostgreSQL driver.
func (c *Credentials) TLSConfig() (*tls.Config, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(c.CACertificate)) {
		return nil, errors.New("strata: the credentials hold no PEM CA certificate")
	}
	return &tls.Config{RootCAs: pool, ServerName: c.Host, MinVersion: tls.VersionTLS12}, nil
}

// Plan is a plan offered to tenants.
type Plan struct {
	// ID is the identifier used in requests ("small").
	ID string `json:"id"`
	// Description describes the plan.
	Description string `json:"description"`
	// CPU is the number of CPU cores.
	CPU int `json:"cpu"`
	// MemoryMB is the memory in MiB.
	MemoryMB int `json:"memory_mb"`
	// MaxConnections is PostgreSQL's max_connections.
	MaxConnections int `json:"max_connections"`
	// StorageGBMin is the smallest storage quota of the plan.
	StorageGBMin int `json:"storage_gb_min"`
	// StorageGBMax is the largest storage quota of the plan.
	StorageGBMax int `json:"storage_gb_max"`
}

// Version is a PostgreSQL major version on offer.
type Version struct {
	// Version is the major version ("16").
	Version string `json:"version"`
	// Default is chosen when a request names no version.
	Default bool `json:"default"`
	// Deprecated versions are still offered, but new instances should pick a newer one.
	Deprecated bool `json:"deprecated"`
}

// Project is a project the caller sees.
type Project struct {
	// Name is a DNS label, unique and immutable.
	Name string `json:"name"`
	// Role is the caller's role; nil for platform admins without a membership.
	Role *Role `json:"role,omitempty"`
	// CreatedAt is when the project was created.
	CreatedAt time.Time `json:"created_at"`
}

// ProjectRole is a project the caller has a role in.
type ProjectRole struct {
	// Project is the project's name.
	Project string `json:"project"`
	// Role is the caller's role there.
	Role Role `json:"role"`
}

// Me is the caller.
type Me struct {
	// ID is the user's id.
	ID string `json:"id"`
	// Username is the user's name.
	Username string `json:"username"`
	// Admin is true for platform administrators.
	Admin bool `json:"admin"`
	// Projects are the projects the caller is a member of, with its role.
	Projects []ProjectRole `json:"projects"`
}

// Member is a user's role in a project.
type Member struct {
	// User is the user's name.
	User string `json:"user"`
	// Role is the member's role.
	Role Role `json:"role"`
	// CreatedAt is when the membership was made.
	CreatedAt time.Time `json:"created_at"`
}

// User is a Strata user.
type User struct {
	// ID is the user's id.
	ID string `json:"id"`
	// Username is the user's name, a DNS label.
	Username string `json:"username"`
	// Admin is true for platform administrators.
	Admin bool `json:"admin"`
	// CreatedAt is when the user was created.
	CreatedAt time.Time `json:"created_at"`
}

// CreateUserRequest is the body of CreateUser.
type CreateUserRequest struct {
	// Username is a DNS label.
	Username string `json:"username"`
	// Password is 12 to 1024 characters.
	Password string `json:"password"`
	// Admin makes the user a platform administrator.
	Admin bool `json:"admin,omitempty"`
}

// String describes the request without the password.
func (r CreateUserRequest) String() string {
	return fmt.Sprintf("{username:%s password:REDACTED admin:%t}", r.Username, r.Admin)
}

// GoString is String, for %#v.
func (r CreateUserRequest) GoString() string { return "strata.CreateUserRequest" + r.String() }

// AccessToken is a personal access token, without the token itself.
type AccessToken struct {
	// ID is the token's UUID (for RevokeAccessToken).
	ID string `json:"id"`
	// Name says what the token is for.
	Name string `json:"name"`
	// Project is the one project the token works in.
	Project string `json:"project"`
	// Role is the token's role there.
	Role Role `json:"role"`
	// State is active, expired or revoked.
	State TokenState `json:"state"`
	// CreatedAt is when the token was made.
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when it stops working.
	ExpiresAt time.Time `json:"expires_at"`
	// LastUsedAt is coarse: written at most every five minutes.
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	// RevokedAt is when it was revoked, if it was.
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// AccessTokenList is one page of personal access tokens.
type AccessTokenList struct {
	// Items are the tokens of this page.
	Items []AccessToken `json:"items"`
	// NextPageToken is passed as PageToken for the next page; empty on the last page.
	NextPageToken string `json:"next_page_token,omitempty"`
}

// CreatedToken is a new personal access token: the only time the token
// itself is shown. Its String method leaves the token out.
type CreatedToken struct {
	AccessToken
	// Token is "strata_pat_…": use it with WithAccessToken.
	Token string `json:"token"`
}

// String describes the token without its secret.
func (t CreatedToken) String() string {
	return fmt.Sprintf("{id:%s name:%s project:%s role:%s token:REDACTED}", t.ID, t.Name, t.Project, t.Role)
}

// GoString is String, for %#v.
func (t CreatedToken) GoString() string { return "strata.CreatedToken" + t.String() }

// CreateAccessTokenRequest is the body of CreateAccessToken.
type CreateAccessTokenRequest struct {
	// Name says what the token is for (1–100 characters).
	Name string `json:"name"`
	// Project is the one project the token works in.
	Project string `json:"project"`
	// Role is the token's role there: at most the caller's own.
	Role Role `json:"role"`
	// ExpiresInDays is 1–365; 0 means the server's default (90).
	ExpiresInDays int `json:"expires_in_days,omitempty"`
}

// TokenResponse is what signing in and refreshing answer. Its String
// method leaves the tokens out.
type TokenResponse struct {
	// AccessToken is the bearer token (a JWT).
	AccessToken string `json:"access_token"`
	// TokenType is always "Bearer".
	TokenType string `json:"token_type"`
	// ExpiresIn is the access token's lifetime in seconds.
	ExpiresIn int64 `json:"expires_in"`
	// RefreshToken exchanges for a new pair at RefreshToken, once.
	RefreshToken string `json:"refresh_token"`
	// RefreshExpiresIn is the refresh token's lifetime in seconds.
	RefreshExpiresIn int64 `json:"refresh_expires_in"`
}

// String describes the response without the tokens.
func (t TokenResponse) String() string {
	return fmt.Sprintf("{access_token:REDACTED token_type:%s expires_in:%d refresh_token:REDACTED refresh_expires_in:%d}",
		t.TokenType, t.ExpiresIn, t.RefreshExpiresIn)
}

// GoString is String, for %#v.
func (t TokenResponse) GoString() string { return "strata.TokenResponse" + t.String() }

// ServiceEvent is one entry of an instance's service log.
type ServiceEvent struct {
	// ID is the event's UUID (resume a stream after it).
	ID string `json:"id"`
	// Time is when it happened.
	Time time.Time `json:"time"`
	// Instance is the instance's name.
	Instance string `json:"instance"`
	// Kind is what happened.
	Kind EventKind `json:"kind"`
	// Severity is how much it matters.
	Severity Severity `json:"severity"`
	// Message describes it.
	Message string `json:"message"`
	// From is the phase before, for phase changes.
	From *Phase `json:"from,omitempty"`
	// To is the phase after, for phase changes.
	To *Phase `json:"to,omitempty"`
}

// EventList is one page of service events.
type EventList struct {
	// Items are the events of this page, oldest first.
	Items []ServiceEvent `json:"items"`
	// NextPageToken is passed as After for the next page; empty on the last page.
	NextPageToken string `json:"next_page_token,omitempty"`
}

// Actor is who acted, in an audit event.
type Actor struct {
	// Kind is "user" (or "anonymous" for a failed sign-in).
	Kind string `json:"kind"`
	// ID is the user's id.
	ID string `json:"id"`
	// Name is the user's name.
	Name string `json:"name"`
}

// Target is what was acted on, in an audit event.
type Target struct {
	// Kind is instance, project, user, member or audit.
	Kind string `json:"kind"`
	// ID is the target's id, when it has one.
	ID *string `json:"id,omitempty"`
	// Name is the target's name.
	Name string `json:"name"`
}

// Outcome is the result of an audited request.
type Outcome struct {
	// Result is success or failure.
	Result OutcomeResult `json:"result"`
	// Status is the HTTP status the caller got.
	Status int `json:"status"`
}

// AuditEvent is one recorded audit event.
type AuditEvent struct {
	// Seq is the position in the chain, from 1, without gaps.
	Seq int64 `json:"seq"`
	// ID is the event's UUID.
	ID string `json:"id"`
	// Time is when it was recorded.
	Time time.Time `json:"time"`
	// Actor is who acted.
	Actor Actor `json:"actor"`
	// SourceIP is the client's address.
	SourceIP *string `json:"source_ip,omitempty"`
	// UserAgent is the client's User-Agent.
	UserAgent *string `json:"user_agent,omitempty"`
	// RequestID is the request's x-request-id.
	RequestID *string `json:"request_id,omitempty"`
	// Project is the project the event is recorded under (nil for platform-wide events).
	Project *string `json:"project,omitempty"`
	// Action is instance.create, instance.credentials.read, member.add, …
	Action string `json:"action"`
	// Target is what was acted on.
	Target Target `json:"target"`
	// Outcome is the result.
	Outcome Outcome `json:"outcome"`
	// Details are the action's details (never secrets).
	Details map[string]any `json:"details"`
	// PrevHash is the hash of the previous event (64 zeros for the first).
	PrevHash string `json:"prev_hash"`
	// Hash is the SHA-256 (hex) of this event's canonical encoding.
	Hash string `json:"hash"`
}

// AuditEventList is one page of audit events, newest first.
type AuditEventList struct {
	// Items are the events of this page.
	Items []AuditEvent `json:"items"`
	// NextPageToken is passed as PageToken for the next (older) page; empty on the last page.
	NextPageToken string `json:"next_page_token,omitempty"`
}

// BrokenLink is the first event at which the audit chain does not hold.
type BrokenLink struct {
	// Seq is the sequence number of the event (or gap) that breaks the chain.
	Seq int64 `json:"seq"`
	// ID is the event's id, when the row could be read.
	ID *string `json:"id,omitempty"`
	// Reason says what is wrong.
	Reason string `json:"reason"`
}

// ChainReport is what a walk over the whole audit chain found.
type ChainReport struct {
	// OK is true when every event and the chain head agree.
	OK bool `json:"ok"`
	// Events is the number of events checked before the walk ended.
	Events int64 `json:"events"`
	// FirstBroken is the first broken link, if any.
	FirstBroken *BrokenLink `json:"first_broken,omitempty"`
}

// Health is the answer of Health and Ready.
type Health struct {
	// Status is "ok" when healthy.
	Status string `json:"status"`
}

// The list wrappers of the document that have no paging; the SDK returns their items.
type (
	planList struct {
		Items []Plan `json:"items"`
	}
	versionList struct {
		Items []Version `json:"items"`
	}
	projectList struct {
		Items []Project `json:"items"`
	}
	memberList struct {
		Items []Member `json:"items"`
	}
	userList struct {
		Items []User `json:"items"`
	}
)

// The request bodies of the document that methods take as arguments.
type (
	createProject struct {
		Name string `json:"name"`
	}
	addMember struct {
		User string `json:"user"`
		Role Role   `json:"role"`
	}
	tokenRequest struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	refreshRequest struct {
		RefreshToken string `json:"refresh_token"`
	}
)
