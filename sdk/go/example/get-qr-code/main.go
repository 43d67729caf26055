// Fetches one QR code with a signed call.
//
//	TTIP_URL=http://127.0.0.1:8080 TTIP_KEY_ID=... TTIP_SECRET=ttip_sk_... go run ./example/get-qr-code <qr code id>
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"connectrpc.com/connect"
	ttip "github.com/ttip/ttip/sdk/go"
	qrv1 "github.com/ttip/ttip/sdk/go/gen/ttip/qr/v1"
	"github.com/ttip/ttip/sdk/go/gen/ttip/qr/v1/qrv1connect"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: get-qr-code <qr code id>")
		os.Exit(2)
	}
	httpClient, err := ttip.NewHTTPClient(ttip.PartnerKey{KeyID: os.Getenv("TTIP_KEY_ID"), Secret: os.Getenv("TTIP_SECRET")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	baseURL := os.Getenv("TTIP_URL")
	if baseURL == "" {
		baseURL = "http://127.0.0.1:8080"
	}
	qr := qrv1connect.NewQrServiceClient(httpClient, baseURL)
	res, err := qr.GetQrCode(context.Background(), connect.NewRequest(&qrv1.GetQrCodeRequest{QrCodeId: os.Args[1]}))
	var ce *connect.Error
	if errors.As(err, &ce) {
		// e.g. permission_denied: missing scope: ttip.qr.v1.QrService/GetQrCode needs the scope qr:read, ...
		fmt.Fprintf(os.Stderr, "%s: %s\n", ce.Code(), ce.Message())
		os.Exit(1)
	} else if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(res.Msg.GetQrCode().GetShortCode(), res.Msg.GetQrCode().GetUrl())
}
