// The in-app inbox: what notification sent this worker in the app (tips received,
// payouts, pool shares), newest first; opening it marks the unread ones read.
import { useMutation } from "@connectrpc/connect-query";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { plainError } from "../lib/errors";
import { useEffect, useRef } from "react";
import { Text, View } from "react-native";
import { when } from "../lib/format";
import { useI18n } from "../lib/i18n";
import { useOfflineQuery } from "../lib/offline";
import { Button, ErrorText, Screen, Title, styles } from "../ui";
import { OfflineNotice } from "./OfflineNotice";
export const INBOX_PAGE = 30;
export function Inbox({ onClose }) {
    const { t, locale } = useI18n();
    const inbox = useOfflineQuery(NotificationService.method.listInAppNotifications, { page: { pageSize: INBOX_PAGE } }, "inbox");
    const markRead = useMutation(NotificationService.method.markRead);
    const marked = useRef(new Set());
    const list = inbox.data?.notifications ?? [];
    useEffect(() => {
        const unread = list.filter((n) => !n.readAt && !marked.current.has(n.notificationId)).map((n) => n.notificationId);
        if (unread.length === 0 || inbox.offline)
            return;
        for (const id of unread)
            marked.current.add(id);
        markRead.mutate({ notificationIds: unread.slice(0, 100) });
    }, [list, inbox.offline, markRead]);
    return (<Screen testID="inbox">
      <Title>{t("inboxTitle")}</Title>
      <Button kind="secondary" testID="inbox-close" title={t("back")} onPress={onClose}/>
      {inbox.offline ? <OfflineNotice savedAt={inbox.savedAt} hasData={inbox.data !== undefined}/> : null}
      <ErrorText>{inbox.error ? plainError(inbox.error, locale) : ""}</ErrorText>
      <View testID="inbox-list">
        {list.map((n) => (<View key={n.notificationId} style={styles.row}>
            <View style={{ flex: 1, gap: 2 }}>
              <Text style={[styles.text, !n.readAt && { fontWeight: "700" }]}>{n.title}</Text>
              <Text style={styles.text}>{n.body}</Text>
              <Text style={styles.muted}>{when(n.createdAt, locale)}</Text>
            </View>
          </View>))}
        {list.length === 0 && !inbox.isLoading && !inbox.offline ? <Text style={styles.muted}>{t("inboxEmpty")}</Text> : null}
      </View>
    </Screen>);
}
/** The unread count for home's button, polled with home. */
export function useUnreadCount(refetchInterval) {
    const r = useOfflineQuery(NotificationService.method.listInAppNotifications, { page: { pageSize: 1 }, unreadOnly: true }, "inbox-unread", { refetchInterval });
    return r.data?.unreadCount ?? 0;
}
