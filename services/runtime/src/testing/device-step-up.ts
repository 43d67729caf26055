import { generateKeyPairSync, sign } from "node:crypto";
import type { Client } from "@connectrpc/connect";
import type { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";

/** The header the gateway reads an admin's step-up token from (the console's STEP_UP_HEADER). */
const STEP_UP_TOKEN_HEADER = "x-ttip-step-up";

/**
 * Call options carrying a device step-up through the gateway, as an admin's browser makes one: a P-256 key
 * registered with the admin's PIN, then one "admin" challenge signed with it. For calls a test makes itself
 * on an RPC declaring step_up; the token is spent by the first call that carries it.
 */
export async function deviceStepUp(auth: Client<typeof AuthService>, pin: string): Promise<{ headers: Record<string, string> }> {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const { device } = await auth.registerDevice({ name: "test runner", publicKeyJwk: JSON.stringify(publicKey.export({ format: "jwk" })), pin });
  const challenge = await auth.createDeviceChallenge({ deviceId: device!.deviceId, purpose: "admin" });
  const signature = sign("sha256", challenge.challenge, { key: privateKey, dsaEncoding: "ieee-p1363" });
  const { stepUpToken } = await auth.verifyDeviceChallenge({ challengeId: challenge.challengeId, signature });
  return { headers: { [STEP_UP_TOKEN_HEADER]: stepUpToken } };
}
