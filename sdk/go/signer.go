package ttip

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The headers a signed partner call carries.
const (
	HeaderKeyID     = "x-ttip-key-id"
	HeaderTimestamp = "x-ttip-timestamp"
	HeaderSignature = "x-ttip-signature"
	// HeaderNonce is a request id, signed and spent once, so two identical
	// calls within one second are not taken for a replay.
	HeaderNonce = "x-ttip-nonce"
)

// MaxSignedBodyBytes bounds the body the signer reads into memory; the gateway
// reads at most 1 MiB by default, so a larger body would be refused anyway.
const MaxSignedBodyBytes = 16 << 20

// PartnerKey is a key an admin issued: its id (a UUID) and its secret
// (ttip_sk_…), which is shown once.
type PartnerKey struct {
	KeyID  string
	Secret string
}

var keyIDPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Validate says what is wrong with a key before any call is made with it.
func (k PartnerKey) Validate() error {
	if !keyIDPattern.MatchString(k.KeyID) {
		return errors.New("ttip: partner key id must be the key's UUID")
	}
	if k.Secret == "" {
		return errors.New("ttip: partner key secret is required")
	}
	return nil
}

// StringToSign is what a partner signs without a nonce (the first scheme, still
// accepted): METHOD \n path (with query) \n unix seconds \n hex SHA-256 of the
// raw body. Two identical calls in one second are then one signed request.
func StringToSign(method, pathWithQuery string, unixSeconds int64, bodySHA256Hex string) string {
	return strings.Join([]string{strings.ToUpper(method), pathWithQuery, strconv.FormatInt(unixSeconds, 10), bodySHA256Hex}, "\n")
}

// StringToSignWithNonce is what a partner signs with a nonce: the first
// scheme's four lines, then \n nonce.
func StringToSignWithNonce(method, pathWithQuery string, unixSeconds int64, bodySHA256Hex, nonce string) string {
	return StringToSign(method, pathWithQuery, unixSeconds, bodySHA256Hex) + "\n" + nonce
}

// NewNonce is a random UUID (version 4), a fresh nonce for one call.
func NewNonce() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("ttip: no randomness for a nonce: " + err.Error())
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// HMACSHA256Hex is the hex HMAC-SHA256 of message under secret.
func HMACSHA256Hex(secret string, message []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(message)
	return hex.EncodeToString(mac.Sum(nil))
}

// SignatureHeaders are the four headers for a request with exactly these body
// bytes, under a fresh nonce.
func SignatureHeaders(key PartnerKey, method, pathWithQuery string, body []byte, at time.Time) http.Header {
	return SignatureHeadersWithNonce(key, method, pathWithQuery, body, at, NewNonce())
}

// SignatureHeadersWithNonce signs under the given nonce (16 to 64 letters,
// digits, - or _; a UUID will do), which the gateway accepts once.
func SignatureHeadersWithNonce(key PartnerKey, method, pathWithQuery string, body []byte, at time.Time, nonce string) http.Header {
	digest := sha256.Sum256(body)
	unix := at.Unix()
	h := http.Header{}
	h.Set(HeaderKeyID, key.KeyID)
	h.Set(HeaderTimestamp, strconv.FormatInt(unix, 10))
	h.Set(HeaderNonce, nonce)
	h.Set(HeaderSignature, HMACSHA256Hex(key.Secret, []byte(StringToSignWithNonce(method, pathWithQuery, unix, hex.EncodeToString(digest[:]), nonce))))
	return h
}

// Signer is an http.RoundTripper that signs every request with a partner key,
// over the body bytes exactly as they go on the wire. It works under any
// connect-go protocol (Connect JSON or binary, gRPC, gRPC-web) for unary calls,
// and for Connect GET requests.
type Signer struct {
	Key PartnerKey
	// Base sends the signed request; http.DefaultTransport when nil.
	Base http.RoundTripper
	// Now is the clock the timestamp is taken from; time.Now when nil.
	Now func() time.Time
	// Nonce gives each call's nonce; NewNonce when nil.
	Nonce func() string
}

// NewSigner checks the key and returns a Signer sending through base (nil: http.DefaultTransport).
func NewSigner(key PartnerKey, base http.RoundTripper) (*Signer, error) {
	if err := key.Validate(); err != nil {
		return nil, err
	}
	return &Signer{Key: key, Base: base}, nil
}

// RoundTrip reads the body once, signs it and sends the request on. The
// caller's request is left unchanged (http.RoundTripper's contract).
func (s *Signer) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := readBody(req)
	if err != nil {
		return nil, err
	}
	signed := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		signed.Body = io.NopCloser(bytes.NewReader(body))
		signed.ContentLength = int64(len(body))
		signed.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	path := req.URL.EscapedPath()
	if req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	nonce := NewNonce
	if s.Nonce != nil {
		nonce = s.Nonce
	}
	for name, values := range SignatureHeadersWithNonce(s.Key, req.Method, path, body, now(), nonce()) {
		signed.Header[name] = values
	}
	base := s.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(signed)
}

// readBody reads the whole request body (a unary call's is small and finite),
// up to MaxSignedBodyBytes, and closes it.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return []byte{}, nil
	}
	defer req.Body.Close()
	body, err := io.ReadAll(io.LimitReader(req.Body, MaxSignedBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("ttip: reading the request body to sign it: %w", err)
	}
	if len(body) > MaxSignedBodyBytes {
		return nil, fmt.Errorf("ttip: a signed request body may be at most %d bytes", MaxSignedBodyBytes)
	}
	return body, nil
}

// NewHTTPClient is an *http.Client that signs every call with key, over
// http.DefaultTransport (HTTP/1.1, and HTTP/2 on https:// addresses). For the
// gRPC protocol on a plaintext address, sign over a transport that speaks h2c:
// &Signer{Key: key, Base: &http.Transport{Protocols: h2cOnly}}.
func NewHTTPClient(key PartnerKey) (*http.Client, error) {
	signer, err := NewSigner(key, nil)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: signer}, nil
}
