// The device's step-up on the phone: this phone's key (made once, its secret in the secure store, registered with
// auth with the worker's PIN) runs the one step-up flow (apps/web's step-up-flow). The screen asks for the
// biometric prompt first.
import { useMutation } from "@connectrpc/connect-query";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { browserKeyName, proveDevice, type AskPin, type DeviceStepUp } from "@ttip/web-lib/step-up-flow";
import { Platform } from "react-native";
import { useApp } from "../app-context";

export function useDeviceStepUp(askPin: AskPin): DeviceStepUp {
  const { keyring } = useApp();
  const register = useMutation(AuthService.method.registerDevice);
  const challenge = useMutation(AuthService.method.createDeviceChallenge);
  const verify = useMutation(AuthService.method.verifyDeviceChallenge);
  return async (userId, purpose, onStage) => {
    const keys = await keyring();
    const key = {
      deviceId: () => keys.deviceId(userId),
      register: async (pin: string) => {
        const made = await keys.create(userId);
        // In the app's web build the key is the browser's, named as the web app names its keys.
        const name = Platform.OS === "web" ? browserKeyName() : `TTIP app (${Platform.OS})`;
        const { device } = await register.mutateAsync({ name, publicKeyJwk: made.publicJwk, pin });
        await made.keep(device!.deviceId);
        return device!.deviceId;
      },
      forget: () => keys.forget(userId),
      sign: (c: Uint8Array) => keys.sign(userId, c),
    };
    return proveDevice(key, { challenge: (r) => challenge.mutateAsync(r), verify: (r) => verify.mutateAsync(r) }, askPin, purpose, onStage);
  };
}
