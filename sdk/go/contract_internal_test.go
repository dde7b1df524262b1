package strata

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// The SDK's models and methods are written by hand after api/openapi.json;
// these tests fail when the document and the SDK drift apart.

type docSchema struct {
	Ref        string                `json:"$ref"`
	Type       any                   `json:"type"`
	Format     string                `json:"format"`
	Properties map[string]*docSchema `json:"properties"`
	Required   []string              `json:"required"`
	Items      *docSchema            `json:"items"`
	AllOf      []*docSchema          `json:"allOf"`
	OneOf      []*docSchema          `json:"oneOf"`
	Enum       []any                 `json:"enum"`
}

type openAPI struct {
	Paths map[string]map[string]struct {
		OperationID string `json:"operationId"`
	} `json:"paths"`
	Components struct {
		Schemas map[string]*docSchema `json:"schemas"`
	} `json:"components"`
}

func loadDocument(t *testing.T) *openAPI {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "api", "openapi.json"))
	if err != nil {
		t.Fatalf("reading the API document: %v", err)
	}
	var d openAPI
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("parsing the API document: %v", err)
	}
	return &d
}

// schemaTypes names the Go type of each schema of the document.
var schemaTypes = map[string]any{
	"AccessToken": AccessToken{}, "AccessTokenList": AccessTokenList{}, "Actor": Actor{},
	"AddMember": addMember{}, "AuditEvent": AuditEvent{}, "AuditEventList": AuditEventList{},
	"BrokenLink": BrokenLink{}, "ChainReport": ChainReport{}, "Condition": Condition{},
	"ConditionStatus": ConditionStatus(""), "CreateInstance": CreateInstanceRequest{},
	"CreateProject": createProject{}, "CreateToken": CreateAccessTokenRequest{},
	"CreateUser": CreateUserRequest{}, "CreatedToken": CreatedToken{}, "Credentials": Credentials{},
	"Endpoint": Endpoint{}, "EventKind": EventKind(""), "EventList": EventList{},
	"FieldError": FieldError{}, "Health": Health{}, "Instance": Instance{},
	"InstanceList": InstanceList{}, "InstanceStatus": InstanceStatus{}, "Me": Me{},
	"Member": Member{}, "MemberList": memberList{}, "Outcome": Outcome{},
	"OutcomeResult": OutcomeResult(""), "Phase": Phase(""), "Plan": Plan{}, "PlanList": planList{},
	"Problem": APIError{}, "Project": Project{}, "ProjectList": projectList{},
	"ProjectRole": ProjectRole{}, "RefreshRequest": refreshRequest{}, "Role": Role(""),
	"ServiceEvent": ServiceEvent{}, "Severity": Severity(""), "Target": Target{},
	"TokenRequest": tokenRequest{}, "TokenResponse": TokenResponse{}, "TokenState": TokenState(""),
	"UpdateInstance": UpdateInstanceRequest{}, "User": User{}, "UserList": userList{},
	"Version": Version{}, "VersionList": versionList{},
}

// enumValues lists the constants the SDK defines for each enumeration.
var enumValues = map[string][]string{
	"Phase":           strs(PhaseProvisioning, PhaseReady, PhaseUpdating, PhaseFailed, PhaseDeleting),
	"Role":            strs(RoleViewer, RoleEditor, RoleOwner),
	"ConditionStatus": strs(ConditionTrue, ConditionFalse, ConditionUnknown),
	"EventKind": strs(EventPhaseChanged, EventProvisioningStep, EventUpdated, EventRestarted,
		EventFailed, EventCredentialsRotated, EventStorageQuota),
	"Severity":      strs(SeverityInfo, SeverityWarning, SeverityError),
	"TokenState":    strs(TokenActive, TokenExpired, TokenRevoked),
	"OutcomeResult": strs(OutcomeSuccess, OutcomeFailure),
}

func strs[T ~string](vs ...T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// operationMethods names the Client method of each operation of the document.
var operationMethods = map[string]string{
	"getJwks": "JWKS", "getOpenIdConfiguration": "OpenIDConfiguration", "healthz": "Health",
	"readyz": "Ready", "verifyAuditChain": "VerifyAuditChain", "signOut": "SignOut",
	"refreshToken": "RefreshToken", "signIn": "SignIn", "getMe": "Me", "listPlans": "ListPlans",
	"listProjects": "ListProjects", "createProject": "CreateProject",
	"listAuditEvents": "ListAuditEvents", "listInstances": "ListInstances",
	"createInstance": "CreateInstance", "deleteInstance": "DeleteInstance",
	"getInstance": "GetInstance", "updateInstance": "UpdateInstance",
	"getCredentials": "GetCredentials", "rotateCredentials": "RotateCredentials",
	"listEvents": "ListEvents", "listMembers": "ListMembers", "addMember": "AddMember",
	"removeMember": "RemoveMember", "listAccessTokens": "ListAccessTokens",
	"createAccessToken": "CreateAccessToken", "revokeAccessToken": "RevokeAccessToken",
	"listUsers": "ListUsers", "createUser": "CreateUser", "deleteUser": "DeleteUser",
	"listVersions": "ListVersions",
}

func TestEveryOperationHasAMethod(t *testing.T) {
	doc := loadDocument(t)
	seen := map[string]bool{}
	client := reflect.TypeOf(&Client{})
	for path, methods := range doc.Paths {
		for method, op := range methods {
			seen[op.OperationID] = true
			name, ok := operationMethods[op.OperationID]
			if !ok {
				t.Errorf("%s %s (%s) has no method in the SDK", strings.ToUpper(method), path, op.OperationID)
				continue
			}
			m, ok := client.MethodByName(name)
			if !ok {
				t.Errorf("operation %s: Client.%s does not exist", op.OperationID, name)
				continue
			}
			if m.Type.NumIn() < 2 || m.Type.In(1).String() != "context.Context" {
				t.Errorf("Client.%s does not take a context.Context first", name)
			}
		}
	}
	for id := range operationMethods {
		if !seen[id] {
			t.Errorf("the SDK maps operation %s, which the document no longer has", id)
		}
	}
}

func TestModelsMatchTheDocument(t *testing.T) {
	doc := loadDocument(t)
	schemas := doc.Components.Schemas
	for name := range schemas {
		if _, ok := schemaTypes[name]; !ok {
			t.Errorf("schema %s has no Go type in the SDK", name)
		}
	}
	for name, v := range schemaTypes {
		s, ok := schemas[name]
		if !ok {
			t.Errorf("the SDK maps schema %s, which the document no longer has", name)
			continue
		}
		typ := reflect.TypeOf(v)
		if len(s.Enum) > 0 {
			var want []string
			for _, e := range s.Enum {
				want = append(want, e.(string))
			}
			got := enumValues[name]
			sort.Strings(want)
			got = slices.Sorted(slices.Values(got))
			if !slices.Equal(got, want) {
				t.Errorf("enum %s: the document says %v, the SDK has %v", name, want, got)
			}
			continue
		}
		props, required := properties(schemas, s)
		fields := jsonFields(typ)
		for prop, ps := range props {
			f, ok := fields[prop]
			if !ok {
				t.Errorf("%s.%s (schema %s) has no field in %s", name, prop, name, typ)
				continue
			}
			if !kindFits(schemas, ps, f.typ) {
				t.Errorf("%s.%s: the document says %s, %s.%s is %s", name, prop, describe(ps), typ.Name(), f.name, f.typ)
			}
			if required[prop] && f.omit && !nullable(ps) {
				t.Errorf("%s.%s is required, but %s.%s is omitted when empty", name, prop, typ.Name(), f.name)
			}
		}
		for prop, f := range fields {
			if _, ok := props[prop]; !ok {
				t.Errorf("%s.%s (json %q) is not a property of schema %s", typ.Name(), f.name, prop, name)
			}
		}
	}
}

// properties merges a schema's own properties with those of its allOf parts.
func properties(all map[string]*docSchema, s *docSchema) (map[string]*docSchema, map[string]bool) {
	props := map[string]*docSchema{}
	req := map[string]bool{}
	if s.Ref != "" {
		return properties(all, all[strings.TrimPrefix(s.Ref, "#/components/schemas/")])
	}
	for k, v := range s.Properties {
		props[k] = v
	}
	for _, r := range s.Required {
		req[r] = true
	}
	for _, part := range s.AllOf {
		p, r := properties(all, part)
		for k, v := range p {
			props[k] = v
		}
		for k := range r {
			req[k] = true
		}
	}
	return props, req
}

type goField struct {
	name string
	typ  reflect.Type
	omit bool
}

// jsonFields lists the JSON fields of a struct, embedded structs included.
func jsonFields(t reflect.Type) map[string]goField {
	out := map[string]goField{}
	if t.Kind() != reflect.Struct {
		return out
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if tag == "-" || tag == "" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		out[name] = goField{name: f.Name, typ: f.Type, omit: strings.Contains(opts, "omitempty") || strings.Contains(opts, "omitzero")}
	}
	return out
}

func types(s *docSchema) []string {
	switch t := s.Type.(type) {
	case string:
		return []string{t}
	case []any:
		var out []string
		for _, x := range t {
			out = append(out, x.(string))
		}
		return out
	}
	return nil
}

func nullable(s *docSchema) bool {
	if slices.Contains(types(s), "null") {
		return true
	}
	for _, o := range s.OneOf {
		if slices.Contains(types(o), "null") {
			return true
		}
	}
	return false
}

func describe(s *docSchema) string {
	b, _ := json.Marshal(s)
	return string(b)
}

var timeType = reflect.TypeOf(time.Time{})

// kindFits reports whether a Go type can hold the values a schema allows.
func kindFits(all map[string]*docSchema, s *docSchema, t reflect.Type) bool {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if s.Ref != "" {
		name := strings.TrimPrefix(s.Ref, "#/components/schemas/")
		want, ok := schemaTypes[name]
		return ok && reflect.TypeOf(want) == t
	}
	for _, o := range s.OneOf {
		if !slices.Contains(types(o), "null") {
			return kindFits(all, o, t)
		}
	}
	for _, typ := range types(s) {
		switch typ {
		case "null":
			continue
		case "string":
			if s.Format == "date-time" {
				return t == timeType
			}
			return t.Kind() == reflect.String
		case "integer":
			switch t.Kind() {
			case reflect.Int, reflect.Int32, reflect.Int64:
				return true
			}
			return false
		case "boolean":
			return t.Kind() == reflect.Bool
		case "array":
			return t.Kind() == reflect.Slice && (s.Items == nil || kindFits(all, s.Items, t.Elem()))
		case "object":
			return t.Kind() == reflect.Map || t.Kind() == reflect.Struct
		}
	}
	return false
}
