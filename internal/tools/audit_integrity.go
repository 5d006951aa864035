package tools

// checkInjected counts, as "injected", the records that hold in clear a
// part the rule encrypts at an offset kseal refuses them on Fetch under
// requireEncrypted (docs/policy.md): after the partition's first record
// with an envelope (the first encrypted offset as the audit sees it: the
// key topic's record may be lower, never higher), or anywhere with
// requireEncryptedFrom: earliest. Records are scanned in offset order per
// partition. Such records were written around kseal (produced straight to
// the brokers) or before a rule gained a part.
func (a *topicAcc) checkInjected(info RecordInfo, ref RecordRef, clear bool) {
	req := a.rep.Policy.require
	if !req.On {
		return
	}
	if info.State == Encrypted {
		if a.firstEnc == nil {
			a.firstEnc = map[int32]int64{}
		}
		if first, ok := a.firstEnc[info.Partition]; !ok || info.Offset < first {
			a.firstEnc[info.Partition] = info.Offset
		}
		return
	}
	if !clear {
		return
	}
	first, ok := a.firstEnc[info.Partition]
	if req.Earliest || (ok && info.Offset > first) {
		a.find("injected", ref, "records in clear where kseal requires envelopes (requireEncrypted): produced around kseal, or before the rule encrypted that part; consumers through kseal get CORRUPT_MESSAGE at them")
	}
}
