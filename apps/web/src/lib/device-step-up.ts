"use client";
// The device's step-up in the browser: this browser's key (made once, not extractable, kept in IndexedDB,
// registered with auth with the worker's PIN) runs the one step-up flow (step-up-flow.ts).
import { useMutation } from "@connectrpc/connect-query";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { forgetDeviceKey, loadDeviceKey, newDeviceKey, saveDeviceKey, signChallenge, type DeviceKey } from "./device-key";
import { browserKeyName, proveDevice, type AskPin, type DeviceStepUp } from "./step-up-flow";

export function useDeviceStepUp(askPin: AskPin): DeviceStepUp {
  const register = useMutation(AuthService.method.registerDevice);
  const challenge = useMutation(AuthService.method.createDeviceChallenge);
  const verify = useMutation(AuthService.method.verifyDeviceChallenge);
  return (userId, purpose, onStage) => {
    let device: DeviceKey | undefined;
    const key = {
      deviceId: async () => (device = await loadDeviceKey(userId))?.deviceId,
      register: async (pin: string) => {
        const made = await newDeviceKey();
        const { device: registered } = await register.mutateAsync({ name: browserKeyName(), publicKeyJwk: made.publicJwk, pin });
        device = { deviceId: registered!.deviceId, privateKey: made.privateKey };
        await saveDeviceKey(userId, device);
        return device.deviceId;
      },
      forget: () => forgetDeviceKey(userId),
      sign: (c: Uint8Array) => signChallenge(device!.privateKey, c),
    };
    return proveDevice(key, { challenge: (r) => challenge.mutateAsync(r), verify: (r) => verify.mutateAsync(r) }, askPin, purpose, onStage);
  };
}
