export const phoneBiometric = { confirm: async () => true };
