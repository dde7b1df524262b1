package strata

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// FieldError is one problem with one field of a request (the problem's
// errors[] entries): Field is a JSON path relative to the request body such
// as "acl[1]" or "labels.team", or the name of a query or header parameter.
type FieldError struct {
	// Field names the field at fault.
	Field string `json:"field"`
	// Message says what is wrong with it.
	Message string `json:"message"`
}

// APIError is an error answer of the Strata API: the RFC 9457 problem
// details (application/problem+json) it carried, the HTTP status and the
// request id. Every method of Client returns it, wrapped or not, for an
// answer of 400 and up; use errors.As to read it:
//
//	var apiErr *strata.APIError
//	if errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusConflict { … }
type APIError struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int `json:"-"`
	// Type is a URI naming the kind of problem (urn:strata:problem:validation).
	Type string `json:"type"`
	// Title is a short summary of the kind of problem.
	Title string `json:"title"`
	// Status is the HTTP status the problem document states (normally StatusCode).
	Status int `json:"status"`
	// Detail explains this occurrence of the problem.
	Detail string `json:"detail"`
	// Errors lists each field at fault, for bad input.
	Errors []FieldError `json:"errors,omitempty"`
	// RequestID is the answer's x-request-id, for finding the request in
	// the server's logs and audit log.
	RequestID string `json:"-"`
	// RetryAfter is what the Retry-After header asked for (429 and 503), zero
	// when absent.
	RetryAfter time.Duration `json:"-"`
	// Method is the HTTP method of the request that failed.
	Method string `json:"-"`
	// Path is the URL path of the request that failed.
	Path string `json:"-"`
}

// Error reports the request, the status and the problem's detail and fields.
func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "strata: %s %s: %d", e.Method, e.Path, e.StatusCode)
	if e.Title != "" {
		b.WriteString(" " + e.Title)
	} else if t := http.StatusText(e.StatusCode); t != "" {
		b.WriteString(" " + t)
	}
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	for _, f := range e.Errors {
		fmt.Fprintf(&b, "; %s: %s", f.Field, f.Message)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (request id %s)", e.RequestID)
	}
	return b.String()
}

func statusOf(err error) int {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.StatusCode
	}
	return 0
}

// IsNotFound reports whether err is an API answer 404: the resource does not
// exist, or the caller may not see it (Strata answers both alike).
func IsNotFound(err error) bool { return statusOf(err) == http.StatusNotFound }

// IsConflict reports whether err is an API answer 409: the request does not
// fit the resource as it is now (a taken name, a change while provisioning).
func IsConflict(err error) bool { return statusOf(err) == http.StatusConflict }

// IsForbidden reports whether err is an API answer 403: the caller's role is
// too small.
func IsForbidden(err error) bool { return statusOf(err) == http.StatusForbidden }

// IsUnauthorized reports whether err is an API answer 401: no valid token.
func IsUnauthorized(err error) bool { return statusOf(err) == http.StatusUnauthorized }

// IsBadRequest reports whether err is an API answer 400: the request breaks
// a rule of the API document; APIError.Errors names the fields.
func IsBadRequest(err error) bool { return statusOf(err) == http.StatusBadRequest }

// ErrInstanceFailed is returned (wrapped) by WaitForPhase when the instance
// reaches phase Failed while another phase is awaited.
var ErrInstanceFailed = errors.New("strata: instance failed")

// ErrNoCredentials is returned when a call needs a bearer token and the
// client was built without WithPassword, WithAccessToken,
// WithOIDCClientCredentials or WithTokenSource.
var ErrNoCredentials = errors.New("strata: no credentials configured")
