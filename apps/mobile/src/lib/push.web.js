export const phonePush = {
    token: async () => undefined,
    onNotification: () => () => undefined,
};
