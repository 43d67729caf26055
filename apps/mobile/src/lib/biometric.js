// The step-up before the device key signs a payout: the phone's biometrics, or its
// passcode when none is enrolled, through expo-local-authentication. A phone with
// neither cannot withdraw from the app (it says so): the key would be unguarded.
import * as LocalAuthentication from "expo-local-authentication";
export const phoneBiometric = {
    async confirm(prompt) {
        const result = await LocalAuthentication.authenticateAsync({ promptMessage: prompt, disableDeviceFallback: false });
        return result.success;
    },
};
