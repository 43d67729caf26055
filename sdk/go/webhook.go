package ttip

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// WebhookSignatureHeader is the header a webhook delivery carries:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">".
const WebhookSignatureHeader = "x-ttip-webhook-signature"

// DefaultWebhookTolerance is how old (or how far ahead) a delivery may be, against replays.
const DefaultWebhookTolerance = 300 * time.Second

// MaxWebhookBodyBytes bounds the body VerifyRequest reads.
const MaxWebhookBodyBytes = 1 << 20

// The reasons a delivery is refused; test them with errors.Is.
var (
	ErrWebhookMalformedHeader  = errors.New("malformed " + WebhookSignatureHeader + " header")
	ErrWebhookStaleTimestamp   = errors.New("stale timestamp")
	ErrWebhookSignatureInvalid = errors.New("signature does not match")
)

// WebhookVerifier checks deliveries signed with one subscription's secret.
type WebhookVerifier struct {
	Secret string
	// Tolerance is DefaultWebhookTolerance when zero.
	Tolerance time.Duration
	// Now is time.Now when nil.
	Now func() time.Time
}

var webhookTimestamp = regexp.MustCompile(`^\d{1,12}$`)

// Verify checks the HMAC-SHA256 of "<t>.<raw body>" and that t is within the
// tolerance. body must be the raw bytes as received, before any JSON parsing.
func (v WebhookVerifier) Verify(body []byte, signatureHeader string) error {
	var stamp string
	var signatures []string
	for _, part := range strings.Split(signatureHeader, ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch name {
		case "t":
			if stamp == "" {
				stamp = value
			}
		case "v1":
			signatures = append(signatures, value)
		}
	}
	if !webhookTimestamp.MatchString(stamp) || len(signatures) == 0 {
		return ErrWebhookMalformedHeader
	}
	at, _ := strconv.ParseInt(stamp, 10, 64)
	tolerance := v.Tolerance
	if tolerance == 0 {
		tolerance = DefaultWebhookTolerance
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	age := now().Unix() - at
	if age > int64(tolerance/time.Second) || -age > int64(tolerance/time.Second) {
		return fmt.Errorf("%w: %d s old (at most %d s)", ErrWebhookStaleTimestamp, age, int64(tolerance/time.Second))
	}
	expected := []byte(HMACSHA256Hex(v.Secret, append([]byte(stamp+"."), body...)))
	for _, s := range signatures {
		if hmac.Equal([]byte(s), expected) {
			return nil
		}
	}
	return ErrWebhookSignatureInvalid
}

// VerifyRequest reads a delivery's body (up to MaxWebhookBodyBytes) and verifies
// it; it returns the body to parse once it is known to be genuine.
func (v WebhookVerifier) VerifyRequest(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxWebhookBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("ttip: reading the webhook body: %w", err)
	}
	if len(body) > MaxWebhookBodyBytes {
		return nil, fmt.Errorf("ttip: a webhook body may be at most %d bytes", MaxWebhookBodyBytes)
	}
	if err := v.Verify(body, r.Header.Get(WebhookSignatureHeader)); err != nil {
		return nil, err
	}
	return body, nil
}

// SignWebhook is the header value for a delivery of body at a time (for tests and senders).
func SignWebhook(secret string, body []byte, at time.Time) string {
	t := strconv.FormatInt(at.Unix(), 10)
	return "t=" + t + ",v1=" + HMACSHA256Hex(secret, append([]byte(t+"."), body...))
}
