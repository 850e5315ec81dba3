// Package ejbca is meshauth's build-time stand-in for the EJBCA REST client that SPIRE's
// "ejbca" UpstreamAuthority plugin links against. The real client module cannot be fetched
// through the Go module proxy, so this package provides only the names that plugin compiles
// against. Every operation fails with ErrNotAvailable: a spire-server built with this stand-in
// cannot use the ejbca UpstreamAuthority (meshauth does not use it); every other plugin is the
// unchanged SPIRE code.
package ejbca

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
)

// ErrNotAvailable is returned by every operation of this package.
var ErrNotAvailable = errors.New("ejbca client: not available in this build (meshauth SPIRE build uses a stand-in for the EJBCA client)")

// Authenticator authenticates requests to EJBCA.
type Authenticator interface {
	// Name identifies the authenticator.
	Name() string
}

// MTLSAuthenticatorBuilder collects the settings of a client-certificate authenticator.
type MTLSAuthenticatorBuilder struct{}

// NewMTLSAuthenticatorBuilder returns an empty builder.
func NewMTLSAuthenticatorBuilder() *MTLSAuthenticatorBuilder { return &MTLSAuthenticatorBuilder{} }

// WithClientCertificate is accepted and ignored.
func (b *MTLSAuthenticatorBuilder) WithClientCertificate(_ *tls.Certificate) *MTLSAuthenticatorBuilder {
	return b
}

// WithCaCertificates is accepted and ignored.
func (b *MTLSAuthenticatorBuilder) WithCaCertificates(_ []*x509.Certificate) *MTLSAuthenticatorBuilder {
	return b
}

// Build always fails with ErrNotAvailable.
func (b *MTLSAuthenticatorBuilder) Build() (Authenticator, error) { return nil, ErrNotAvailable }

// Configuration holds client settings.
type Configuration struct {
	Host string
}

// NewConfiguration returns an empty configuration.
func NewConfiguration() *Configuration { return &Configuration{} }

// SetAuthenticator is accepted and ignored.
func (c *Configuration) SetAuthenticator(_ Authenticator) {}

// V1CertificateApiService would issue certificates; here every request fails.
type V1CertificateApiService struct{}

// APIClient groups the API services.
type APIClient struct {
	V1CertificateApi *V1CertificateApiService
}

// NewAPIClient always fails with ErrNotAvailable.
func NewAPIClient(_ *Configuration) (*APIClient, error) { return nil, ErrNotAvailable }

// EnrollCertificateRestRequest is a PKCS#10 enrollment request.
type EnrollCertificateRestRequest struct {
	Username                 string
	Password                 string
	CertificateRequest       string
	CertificateAuthorityName string
	CertificateProfileName   string
	EndEntityProfileName     string
	IncludeChain             bool
	AccountBindingId         string
}

// NewEnrollCertificateRestRequest returns an empty request.
func NewEnrollCertificateRestRequest() *EnrollCertificateRestRequest {
	return &EnrollCertificateRestRequest{}
}

// SetUsername sets the end entity name.
func (r *EnrollCertificateRestRequest) SetUsername(v string) { r.Username = v }

// SetPassword sets the end entity password.
func (r *EnrollCertificateRestRequest) SetPassword(v string) { r.Password = v }

// SetCertificateRequest sets the PEM CSR.
func (r *EnrollCertificateRestRequest) SetCertificateRequest(v string) { r.CertificateRequest = v }

// SetCertificateAuthorityName sets the CA name.
func (r *EnrollCertificateRestRequest) SetCertificateAuthorityName(v string) {
	r.CertificateAuthorityName = v
}

// SetCertificateProfileName sets the certificate profile.
func (r *EnrollCertificateRestRequest) SetCertificateProfileName(v string) {
	r.CertificateProfileName = v
}

// SetEndEntityProfileName sets the end entity profile.
func (r *EnrollCertificateRestRequest) SetEndEntityProfileName(v string) {
	r.EndEntityProfileName = v
}

// SetIncludeChain asks for the CA chain in the response.
func (r *EnrollCertificateRestRequest) SetIncludeChain(v bool) { r.IncludeChain = v }

// SetAccountBindingId sets the account binding id.
func (r *EnrollCertificateRestRequest) SetAccountBindingId(v string) { r.AccountBindingId = v }

// CertificateRestResponse is an enrollment response.
type CertificateRestResponse struct {
	Certificate      string
	CertificateChain []string
	ResponseFormat   string
}

// GetCertificate returns the issued certificate.
func (r *CertificateRestResponse) GetCertificate() string { return r.Certificate }

// GetResponseFormat returns "PEM" or "DER".
func (r *CertificateRestResponse) GetResponseFormat() string { return r.ResponseFormat }

// ApiEnrollPkcs10CertificateRequest is a pending enrollment call.
type ApiEnrollPkcs10CertificateRequest struct{}

// EnrollCertificateRestRequest sets the request body.
func (r ApiEnrollPkcs10CertificateRequest) EnrollCertificateRestRequest(_ EnrollCertificateRestRequest) ApiEnrollPkcs10CertificateRequest {
	return r
}

// Execute always fails with ErrNotAvailable.
func (r ApiEnrollPkcs10CertificateRequest) Execute() (*CertificateRestResponse, *http.Response, error) {
	return nil, nil, ErrNotAvailable
}

// EnrollPkcs10Certificate starts an enrollment call.
func (s *V1CertificateApiService) EnrollPkcs10Certificate(_ context.Context) ApiEnrollPkcs10CertificateRequest {
	return ApiEnrollPkcs10CertificateRequest{}
}

// GenericOpenAPIError is an error response of the EJBCA API.
type GenericOpenAPIError struct {
	body  []byte
	error string
}

// Error returns the error text.
func (e *GenericOpenAPIError) Error() string { return e.error }

// Body returns the raw response body.
func (e *GenericOpenAPIError) Body() []byte { return e.body }
