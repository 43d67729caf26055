import { randomUUID } from "node:crypto";
import { createClient, type Transport } from "@connectrpc/connect";
import { NotificationInternalService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";

/** Delivers a one-time code to a phone. Implementations must never log the code. */
export interface OtpSender {
  send(message: { phone: string; code: string; locale: "en" | "sw"; challengeId: string }): Promise<void>;
}

export function otpText(code: string, locale: "en" | "sw"): string {
  return locale === "sw"
    ? `Nambari yako ya TTIP ni ${code}. Inaisha baada ya dakika 5. Usimpe mtu yeyote.`
    : `Your TTIP code is ${code}. It expires in 5 minutes. Never share it.`;
}

/**
 * Sends the SMS through an Africa's Talking-shaped API (POST
 * /version1/messaging, form-encoded, apiKey header): the SMS simulator in
 * this folder, or the provider itself with a different base URL and key.
 */
export class SmsApiOtpSender implements OtpSender {
  constructor(private readonly target: () => { url: string; username: string; apiKey: string }) {}

  async send(m: { phone: string; code: string; locale: "en" | "sw" }): Promise<void> {
    const { url, username, apiKey } = this.target();
    const res = await fetch(new URL("/version1/messaging", url), {
      method: "POST",
      headers: { apiKey, accept: "application/json", "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ username, to: `+${m.phone}`, message: otpText(m.code, m.locale) }),
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`SMS API answered HTTP ${res.status}`);
    const body = (await res.json()) as { SMSMessageData?: { Recipients?: Array<{ statusCode: number }> } };
    const status = body.SMSMessageData?.Recipients?.[0]?.statusCode;
    // 100 processed, 101 sent, 102 queued: anything else did not go out.
    if (status === undefined || status < 100 || status > 102) throw new Error(`SMS API refused the message (status ${status})`);
  }
}

/** Sends through the notification service (template OTP, SMS channel). */
export class NotificationOtpSender implements OtpSender {
  constructor(private readonly transport: () => Transport) {}

  async send(m: { phone: string; code: string; locale: "en" | "sw"; challengeId: string }): Promise<void> {
    const client = createClient(NotificationInternalService, this.transport());
    await client.sendNotification({
      // One challenge is one message, however often this is retried.
      idempotencyKey: `otp-${m.challengeId || randomUUID()}`,
      recipient: { case: "phone", value: `+${m.phone}` },
      templateKey: TemplateKey.OTP,
      locale: m.locale,
      variables: { code: m.code },
      channels: [Channel.SMS],
    });
  }
}
