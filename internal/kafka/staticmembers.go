package kafka

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// staticMembers lists the group.instance.ids of g's static members, sorted.
func staticMembers(g kadm.DescribedGroup) []string {
	var ids []string
	for _, m := range g.Members {
		if m.InstanceID != nil && *m.InstanceID != "" {
			ids = append(ids, *m.InstanceID)
		}
	}
	slices.Sort(ids)
	return ids
}

// RemoveStaticMembers takes static members out of group at once (KIP-345's
// admin LeaveGroup) instead of letting their partitions wait out the session
// timeout: a static member does not leave when it stops, since a restart
// would otherwise rebalance. The operator calls it for members whose pods are
// gone for good. It returns the ones it removed; a member that is not there
// (UNKNOWN_MEMBER_ID: it left, timed out, or an earlier call removed it) is
// no error.
func RemoveStaticMembers(ctx context.Context, adm *kadm.Client, group, reason string, instanceIDs ...string) ([]string, error) {
	if len(instanceIDs) == 0 {
		return nil, nil
	}
	resp, err := adm.LeaveGroup(ctx, kadm.LeaveGroup(group).Reason(reason).InstanceIDs(instanceIDs...))
	if err != nil {
		return nil, fmt.Errorf("remove static members %v of group %s: %w", instanceIDs, group, err)
	}
	var removed []string
	var errs []error
	for _, l := range resp.Sorted() {
		switch {
		case l.Err == nil:
			removed = append(removed, l.InstanceID)
		case !errors.Is(l.Err, kerr.UnknownMemberID):
			errs = append(errs, fmt.Errorf("remove static member %s of group %s: %w", l.InstanceID, group, l.Err))
		}
	}
	return removed, errors.Join(errs...)
}
