package ttip_test

// Against a running gateway: sdk/test/go-sdk.test.ts starts the platform, issues a
// partner key and runs these with TTIP_GATEWAY_URL, TTIP_KEY_ID and TTIP_SECRET set.
// Outside that harness they are skipped, unless TTIP_REQUIRE_GATEWAY=1.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	ttip "github.com/ttip/ttip/sdk/go"
	authv1 "github.com/ttip/ttip/sdk/go/gen/ttip/auth/v1"
	"github.com/ttip/ttip/sdk/go/gen/ttip/auth/v1/authv1connect"
	qrv1 "github.com/ttip/ttip/sdk/go/gen/ttip/qr/v1"
	"github.com/ttip/ttip/sdk/go/gen/ttip/qr/v1/qrv1connect"
	"google.golang.org/protobuf/encoding/protojson"
)

type gateway struct {
	url string
	key ttip.PartnerKey
}

func runningGateway(t *testing.T) gateway {
	t.Helper()
	g := gateway{os.Getenv("TTIP_GATEWAY_URL"), ttip.PartnerKey{KeyID: os.Getenv("TTIP_KEY_ID"), Secret: os.Getenv("TTIP_SECRET")}}
	if g.url == "" || g.key.KeyID == "" || g.key.Secret == "" {
		if os.Getenv("TTIP_REQUIRE_GATEWAY") == "1" {
			t.Fatal("TTIP_GATEWAY_URL, TTIP_KEY_ID and TTIP_SECRET are required")
		}
		t.Skip("no running gateway: set TTIP_GATEWAY_URL, TTIP_KEY_ID and TTIP_SECRET")
	}
	return g
}

// h2c speaks HTTP/2 without TLS, which the gRPC protocol needs on a plaintext address.
func h2c() *http.Transport {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Transport{Protocols: protocols}
}

// getQrCode asks for a random code and checks the answer is about that code: the
// harness's qr service echoes the id with the short code K7M4QX.
func getQrCode(t *testing.T, client qrv1connect.QrServiceClient) {
	t.Helper()
	id := randomUUID(t)
	res, err := client.GetQrCode(context.Background(), connect.NewRequest(&qrv1.GetQrCodeRequest{QrCodeId: id}))
	if err != nil {
		t.Fatalf("signed call refused: %v", err)
	}
	if got := res.Msg.GetQrCode(); got.GetQrCodeId() != id || got.GetShortCode() != "K7M4QX" || got.GetStatus() != qrv1.QrCodeStatus_QR_CODE_STATUS_ACTIVE {
		t.Fatalf("answer %v, want code %s K7M4QX active", got, id)
	}
}

func qrClient(g gateway, key ttip.PartnerKey, now func() time.Time, opts ...connect.ClientOption) qrv1connect.QrServiceClient {
	return qrv1connect.NewQrServiceClient(&http.Client{Transport: &ttip.Signer{Key: key, Now: now}}, g.url, opts...)
}

func randomUUID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return strings.Join([]string{hex.EncodeToString(b[0:4]), hex.EncodeToString(b[4:6]), hex.EncodeToString(b[6:8]), hex.EncodeToString(b[8:10]), hex.EncodeToString(b[10:16])}, "-")
}

// Each protocol connect-go speaks gets a signed answer; the harness counts the
// calls the service saw as this key with the role partner.
func TestGatewayAnswersSignedCalls(t *testing.T) {
	g := runningGateway(t)
	protocols := map[string][]connect.ClientOption{
		"connect-json":   {connect.WithProtoJSON()},
		"connect-binary": nil,
		"connect-get":    {connect.WithHTTPGet()},
		"grpc-web":       {connect.WithGRPCWeb()},
	}
	for name, opts := range protocols {
		t.Run(name, func(t *testing.T) { getQrCode(t, qrClient(g, g.key, nil, opts...)) })
	}
	t.Run("grpc", func(t *testing.T) {
		getQrCode(t, qrv1connect.NewQrServiceClient(&http.Client{Transport: &ttip.Signer{Key: g.key, Base: h2c()}}, g.url, connect.WithGRPC()))
	})
}

func expectError(t *testing.T, err error, code connect.Code, message *regexp.Regexp) {
	t.Helper()
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("want a %v error, got %v", code, err)
	}
	if ce.Code() != code || !message.MatchString(ce.Message()) {
		t.Fatalf("got %v %q, want %v matching %s", ce.Code(), ce.Message(), code, message)
	}
}

func TestGatewayNamesWhatIsWrong(t *testing.T) {
	g := runningGateway(t)
	ctx := context.Background()
	get := func(c qrv1connect.QrServiceClient) error {
		_, err := c.GetQrCode(ctx, connect.NewRequest(&qrv1.GetQrCodeRequest{QrCodeId: randomUUID(t)}))
		return err
	}
	t.Run("wrong secret", func(t *testing.T) {
		wrong := ttip.PartnerKey{KeyID: g.key.KeyID, Secret: "ttip_sk_wrong"}
		expectError(t, get(qrClient(g, wrong, nil)), connect.CodeUnauthenticated,
			regexp.MustCompile(`^partner signature refused: signature does not match$`))
	})
	t.Run("stale timestamp", func(t *testing.T) {
		tenMinutesAgo := func() time.Time { return time.Now().Add(-10 * time.Minute) }
		expectError(t, get(qrClient(g, g.key, tenMinutesAgo)), connect.CodeUnauthenticated,
			regexp.MustCompile(`^partner signature refused: stale timestamp: (599|600|601) s behind the gateway's clock \(at most 300 s\)$`))
	})
	t.Run("identical calls in one second", func(t *testing.T) {
		// The same body, path and second twice, each under its own nonce: both go through.
		at := time.Now()
		client := qrClient(g, g.key, func() time.Time { return at })
		id := randomUUID(t)
		for i := 0; i < 2; i++ {
			if _, err := client.GetQrCode(ctx, connect.NewRequest(&qrv1.GetQrCodeRequest{QrCodeId: id})); err != nil {
				t.Fatalf("identical call %d refused: %v", i+1, err)
			}
		}
	})
	t.Run("replayed request", func(t *testing.T) {
		// The same nonce twice: the second is a replay.
		nonce := randomUUID(t)
		client := qrv1connect.NewQrServiceClient(&http.Client{Transport: &ttip.Signer{Key: g.key, Nonce: func() string { return nonce }}}, g.url)
		if _, err := client.GetQrCode(ctx, connect.NewRequest(&qrv1.GetQrCodeRequest{QrCodeId: randomUUID(t)})); err != nil {
			t.Fatalf("first call refused: %v", err)
		}
		_, err := client.GetQrCode(ctx, connect.NewRequest(&qrv1.GetQrCodeRequest{QrCodeId: randomUUID(t)}))
		expectError(t, err, connect.CodeUnauthenticated, regexp.MustCompile(`^partner signature refused: request replayed \(this nonce was already used\)$`))
	})
	t.Run("missing scope", func(t *testing.T) {
		_, err := qrClient(g, g.key, nil).RotateQrCode(ctx, connect.NewRequest(&qrv1.RotateQrCodeRequest{QrCodeId: randomUUID(t)}))
		expectError(t, err, connect.CodePermissionDenied,
			regexp.MustCompile(`^missing scope: ttip\.qr\.v1\.QrService/RotateQrCode needs the scope qr:write, which this key does not have$`))
	})
}

type delivery struct {
	body   []byte
	header http.Header
}

// The whole webhook path as a partner lives it: a subscription made with a signed
// call, a tip at the partner's checkout (the harness publishes tip.succeeded for
// the key), the platform's signed delivery to the partner's own server, verified
// there; the same delivery with its body changed, or under another secret, is not.
func TestWebhookDeliveryFromThePlatformVerifies(t *testing.T) {
	g := runningGateway(t)
	eventURL := os.Getenv("TTIP_TEST_TIP_EVENT_URL")
	if eventURL == "" {
		t.Fatal("TTIP_TEST_TIP_EVENT_URL is required with a running gateway")
	}
	received := make(chan delivery, 8)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		received <- delivery{body, r.Header.Clone()}
	}))
	defer receiver.Close()

	ctx := context.Background()
	httpClient, err := ttip.NewHTTPClient(g.key)
	if err != nil {
		t.Fatal(err)
	}
	partner := authv1connect.NewPartnerServiceClient(httpClient, g.url)
	created, err := partner.CreateWebhookSubscription(ctx, connect.NewRequest(&authv1.CreateWebhookSubscriptionRequest{
		Url:            receiver.URL + "/hooks/ttip",
		EventTypes:     []authv1.WebhookEventType{authv1.WebhookEventType_WEBHOOK_EVENT_TYPE_TIP_SUCCEEDED},
		IdempotencyKey: "go-sdk-" + randomUUID(t),
	}))
	if err != nil {
		t.Fatalf("CreateWebhookSubscription: %v", err)
	}
	secret := created.Msg.GetSigningSecret()
	if secret == "" || created.Msg.GetSubscription().GetKeyId() != g.key.KeyID {
		t.Fatalf("subscription %v", created.Msg)
	}

	res, err := http.Post(eventURL, "application/json", nil)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("publishing the tip event: %v %v", err, res)
	}
	var event struct{ EventID string }
	if err := json.NewDecoder(res.Body).Decode(&event); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()

	var got delivery
	select {
	case got = <-received:
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery within 30 s")
	}
	if !strings.Contains(string(got.body), event.EventID) {
		t.Fatalf("delivery %s is not about event %s", got.body, event.EventID)
	}
	header := got.header.Get(ttip.WebhookSignatureHeader)
	if err := (ttip.WebhookVerifier{Secret: secret}).Verify(got.body, header); err != nil {
		t.Fatalf("the platform's delivery does not verify: %v (header %q)", err, header)
	}
	tampered := append([]byte(" "), got.body...)
	if err := (ttip.WebhookVerifier{Secret: secret}).Verify(tampered, header); !errors.Is(err, ttip.ErrWebhookSignatureInvalid) {
		t.Fatalf("tampered delivery: %v", err)
	}
	if err := (ttip.WebhookVerifier{Secret: secret + "x"}).Verify(got.body, header); !errors.Is(err, ttip.ErrWebhookSignatureInvalid) {
		t.Fatalf("another secret: %v", err)
	}
	// The body is a ttip.auth.v1.WebhookEvent in protobuf JSON: the generated type parses it.
	var parsed authv1.WebhookEvent
	if err := protojson.Unmarshal(got.body, &parsed); err != nil {
		t.Fatalf("the delivery is not a WebhookEvent: %v", err)
	}
	if parsed.GetEventId() != event.EventID || parsed.GetType() != authv1.WebhookEventType_WEBHOOK_EVENT_TYPE_TIP_SUCCEEDED ||
		parsed.GetDeliveryId() != got.header.Get("x-ttip-delivery-id") || parsed.GetTip().GetTipId() == "" {
		t.Fatalf("parsed delivery %v", &parsed)
	}
	// VerifyRequest reads a request the way a partner's handler gets it.
	req := httptest.NewRequest(http.MethodPost, "/hooks/ttip", strings.NewReader(string(got.body)))
	req.Header = got.header
	if body, err := (ttip.WebhookVerifier{Secret: secret}).VerifyRequest(req); err != nil || string(body) != string(got.body) {
		t.Fatalf("VerifyRequest: %v", err)
	}
}
