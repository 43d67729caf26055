// Package ttip is the TTIP partner SDK for Go: a request signer for partner
// keys and a webhook verifier. The typed Connect clients for the public API are
// generated from the contracts under gen/ (for example gen/ttip/qr/v1/qrv1connect).
package ttip

// Version is this SDK's release (see CHANGELOG.md); the module is tagged sdk/go/vX.Y.Z.
const Version = "0.1.0"
