export { PARTNER_HEADERS, partnerSigner, signRequest, stringToSign, hmacSha256Hex, type PartnerKey } from "./signer.js";
export { signWebhook, verifyWebhook, WebhookVerificationError, WEBHOOK_SIGNATURE_HEADER, type VerifyWebhookOptions } from "./webhook.js";
export { createPartnerTransport, fetchHttpClient, signingHttpClient, type PartnerTransportOptions, type SigningClock } from "./transport.js";
