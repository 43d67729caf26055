// How channels, template keys and e-mail addresses read in logs, metrics and events.
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";

export function maskEmail(email: string): string {
  const [local, domain] = email.split("@");
  return `${local.slice(0, 1)}***@${domain ?? ""}`;
}

export const CHANNEL_NAMES: Record<Channel, string> = {
  [Channel.UNSPECIFIED]: "unspecified",
  [Channel.SMS]: "sms",
  [Channel.EMAIL]: "email",
  [Channel.PUSH]: "push",
  [Channel.IN_APP]: "in_app",
};

export function templateKeyName(key: TemplateKey): string {
  return (TemplateKey[key] ?? "UNSPECIFIED").toLowerCase();
}
