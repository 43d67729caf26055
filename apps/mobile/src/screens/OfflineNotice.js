import { Text } from "react-native";
import { when } from "../lib/format";
import { useI18n } from "../lib/i18n";
import { Notice, styles } from "../ui";
/** The clear offline state: what is shown is a saved copy, and from when. */
export function OfflineNotice({ savedAt, hasData }) {
    const { t, locale } = useI18n();
    return (<Notice tone="warn" testID="offline">
      <Text role="status" style={styles.text}>{hasData && savedAt ? t("offline", { time: when(savedAt, locale) }) : t("offlineNothing")}</Text>
    </Notice>);
}
