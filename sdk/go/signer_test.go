package ttip_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	ttip "github.com/ttip/ttip/sdk/go"
)

// The same vectors as the TypeScript SDK's signer and webhook signer produce.
var (
	vectorKey  = ttip.PartnerKey{KeyID: "0f8e2b8c-9d43-4c0b-a7a3-4c1f2d3e4a5b", Secret: "ttip_sk_vector"}
	vectorBody = []byte(`{"qrCodeId":"5b0f3a8e-2a51-4c1e-9c55-0d3c1e6c2f10"}`)
	vectorAt   = time.Unix(1767225600, 0)
)

const vectorNonce = "6f1d2c3b-4a59-4e68-8f7a-0b1c2d3e4f50"

const (
	// Without a nonce (the first scheme) and with vectorNonce.
	vectorSignatureV1      = "cb5e6e28f9e04f972791b31621bcd05303e596fb8a43794ccf369d38c8415ad3"
	vectorSignature        = "838e076bacdabfb40bff78fea5d40679312e7452c74d23c7a7d2ddf276d4187b"
	vectorWebhookSignature = "t=1767225600,v1=3b5c81eacd6cb40b8c996051e1c4ba6767ea019a871f1752c237db8c146cb3ab"
)

func TestSignatureHeadersMatchTheSharedVector(t *testing.T) {
	h := ttip.SignatureHeadersWithNonce(vectorKey, "post", "/ttip.qr.v1.QrService/GetQrCode?x=1", vectorBody, vectorAt, vectorNonce)
	if got := h.Get(ttip.HeaderSignature); got != vectorSignature {
		t.Fatalf("signature %s, want %s", got, vectorSignature)
	}
	if h.Get(ttip.HeaderTimestamp) != "1767225600" || h.Get(ttip.HeaderKeyID) != vectorKey.KeyID || h.Get(ttip.HeaderNonce) != vectorNonce {
		t.Fatalf("headers %v", h)
	}
	digest := sha256.Sum256(vectorBody)
	v1 := ttip.StringToSign("post", "/ttip.qr.v1.QrService/GetQrCode?x=1", vectorAt.Unix(), hex.EncodeToString(digest[:]))
	if got := ttip.HMACSHA256Hex(vectorKey.Secret, []byte(v1)); got != vectorSignatureV1 {
		t.Fatalf("first-scheme signature %s, want %s", got, vectorSignatureV1)
	}
}

func TestEachCallGetsAFreshNonce(t *testing.T) {
	a := ttip.SignatureHeaders(vectorKey, "POST", "/p", vectorBody, vectorAt)
	b := ttip.SignatureHeaders(vectorKey, "POST", "/p", vectorBody, vectorAt)
	if a.Get(ttip.HeaderNonce) == b.Get(ttip.HeaderNonce) || a.Get(ttip.HeaderSignature) == b.Get(ttip.HeaderSignature) {
		t.Fatalf("two identical calls signed alike: %v %v", a, b)
	}
	if len(a.Get(ttip.HeaderNonce)) != 36 {
		t.Fatalf("nonce %q is not a UUID", a.Get(ttip.HeaderNonce))
	}
}

func TestSignerSignsTheBytesOnTheWireAndLeavesTheRequestAlone(t *testing.T) {
	var seen *http.Request
	var seenBody []byte
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r
		seenBody, _ = io.ReadAll(r.Body)
	}))
	defer server.Close()
	signer := &ttip.Signer{Key: vectorKey, Now: func() time.Time { return vectorAt }, Nonce: func() string { return vectorNonce }}
	req, _ := http.NewRequest(http.MethodPost, server.URL+"/ttip.qr.v1.QrService/GetQrCode?x=1", strings.NewReader(string(vectorBody)))
	res, err := (&http.Client{Transport: signer}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := seen.Header.Get(ttip.HeaderSignature); got != vectorSignature {
		t.Fatalf("server saw signature %q, want %s", got, vectorSignature)
	}
	if string(seenBody) != string(vectorBody) {
		t.Fatalf("server saw body %q", seenBody)
	}
	if req.Header.Get(ttip.HeaderSignature) != "" {
		t.Fatal("the caller's request was changed")
	}
}

func TestKeysAreCheckedBeforeAnyCall(t *testing.T) {
	if _, err := ttip.NewSigner(ttip.PartnerKey{KeyID: "savanna", Secret: "s"}, nil); err == nil || !strings.Contains(err.Error(), "UUID") {
		t.Fatalf("a key id that is not a UUID: %v", err)
	}
	if _, err := ttip.NewSigner(ttip.PartnerKey{KeyID: vectorKey.KeyID}, nil); err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("no secret: %v", err)
	}
}

func TestWebhookVerifier(t *testing.T) {
	body := []byte(`{"type":"tip.succeeded"}`)
	at := func() time.Time { return vectorAt.Add(10 * time.Second) }
	v := ttip.WebhookVerifier{Secret: "whsec_vector", Now: at}
	if got := ttip.SignWebhook("whsec_vector", body, vectorAt); got != vectorWebhookSignature {
		t.Fatalf("SignWebhook %s, want the shared vector", got)
	}
	if err := v.Verify(body, vectorWebhookSignature); err != nil {
		t.Fatalf("genuine delivery refused: %v", err)
	}
	cases := map[string]struct {
		body   string
		header string
		secret string
		want   error
	}{
		"tampered body":   {`{"type":"tip.refunded"}`, vectorWebhookSignature, "whsec_vector", ttip.ErrWebhookSignatureInvalid},
		"another secret":  {string(body), vectorWebhookSignature, "whsec_other", ttip.ErrWebhookSignatureInvalid},
		"no timestamp":    {string(body), "v1=abc", "whsec_vector", ttip.ErrWebhookMalformedHeader},
		"no signature":    {string(body), "t=1767225600", "whsec_vector", ttip.ErrWebhookMalformedHeader},
		"empty header":    {string(body), "", "whsec_vector", ttip.ErrWebhookMalformedHeader},
		"stale timestamp": {string(body), ttip.SignWebhook("whsec_vector", body, vectorAt.Add(-10*time.Minute)), "whsec_vector", ttip.ErrWebhookStaleTimestamp},
	}
	for name, c := range cases {
		err := ttip.WebhookVerifier{Secret: c.secret, Now: at}.Verify([]byte(c.body), c.header)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	// A second v1 (during a secret rotation) is accepted when either matches.
	rotated := vectorWebhookSignature + ",v1=" + strings.Repeat("0", 64)
	if err := v.Verify(body, rotated); err != nil {
		t.Fatalf("two signatures, one genuine: %v", err)
	}
}
