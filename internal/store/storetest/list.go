package storetest

import (
	"slices"
	"testing"

	"github.com/comfyfleet/comfyfleet/internal/store"
	"github.com/comfyfleet/comfyfleet/internal/task"
)

func listCases() []testCase {
	return []testCase{
		{"Empty", testListEmpty},
		{"NewestFirst", testListNewestFirst},
		{"SameTimeBySeq", testListSameTimeBySeq},
		{"ItemsWithoutBody", testListItemsWithoutBody},
		{"Statuses", testListStatuses},
		{"Owner", testListOwner},
		{"Paging", testListPaging},
		{"LimitCap", testListLimitCap},
	}
}

// list runs TaskList and fails on error.
func list(t *testing.T, s store.Store, p store.TaskListParams) *store.TaskListResult {
	t.Helper()
	res, err := s.TaskList(t.Context(), &p)
	must(t, "TaskList", err)
	return res
}

// insertTimes inserts one task per time offset (seconds) and returns their ids in insert order.
func insertTimes(t *testing.T, s store.Store, owner string, secs ...int) []string {
	t.Helper()
	out := make([]string, len(secs))
	for i, sec := range secs {
		out[i] = insert(t, s, store.TaskInsertParams{Owner: owner, Now: at(sec)}).ID
	}
	return out
}

func reversed(in []string) []string {
	out := slices.Clone(in)
	slices.Reverse(out)
	return out
}

func testListEmpty(t *testing.T, s store.Store) {
	res := list(t, s, store.TaskListParams{})
	if res.Total != 0 || len(res.Items) != 0 {
		t.Fatalf("TaskList on empty store = %d items, total %d; want none", len(res.Items), res.Total)
	}
}

func testListNewestFirst(t *testing.T, s store.Store) {
	// Inserted out of time order: the list follows CreatedAt, not inserts.
	byTime := insertTimes(t, s, "alice", 3, 1, 5, 2, 4)
	want := []string{byTime[2], byTime[4], byTime[0], byTime[3], byTime[1]}
	res := list(t, s, store.TaskListParams{})
	diff(t, "TaskList order", want, ids(res.Items))
	if res.Total != 5 {
		t.Errorf("Total = %d, want 5", res.Total)
	}
}

func testListSameTimeBySeq(t *testing.T, s store.Store) {
	same := insertTimes(t, s, "alice", 7, 7, 7, 7)
	older := insertTimes(t, s, "alice", 6)
	want := append(reversed(same), older...)
	diff(t, "TaskList order", want, ids(list(t, s, store.TaskListParams{}).Items))
}

func testListItemsWithoutBody(t *testing.T, s store.Store) {
	byStatus := withStatus(t, s, "alice")
	res := list(t, s, store.TaskListParams{})
	if len(res.Items) != len(byStatus) {
		t.Fatalf("TaskList returned %d items, want %d", len(res.Items), len(byStatus))
	}
	for _, item := range res.Items {
		want := get(t, s, item.ID)
		want.Workflow, want.Params = nil, nil
		diff(t, "list item "+string(item.Status), want, item)
	}
}

func testListStatuses(t *testing.T, s store.Store) {
	byStatus := withStatus(t, s, "alice")
	idOf := func(st task.Status) string { return byStatus[st].ID }
	cases := []struct {
		name     string
		statuses []task.Status
		want     []string // newest first: withStatus creates in running, completed, pending, failed, cancelled order
	}{
		{"all", nil, []string{idOf(task.StatusCancelled), idOf(task.StatusFailed), idOf(task.StatusPending), idOf(task.StatusCompleted), idOf(task.StatusRunning)}},
		{"one", []task.Status{task.StatusRunning}, []string{idOf(task.StatusRunning)}},
		{"two", []task.Status{task.StatusCompleted, task.StatusFailed}, []string{idOf(task.StatusFailed), idOf(task.StatusCompleted)}},
		{"three", []task.Status{task.StatusPending, task.StatusRunning, task.StatusCancelled}, []string{idOf(task.StatusCancelled), idOf(task.StatusPending), idOf(task.StatusRunning)}},
		{"duplicates", []task.Status{task.StatusFailed, task.StatusFailed, task.StatusCancelled}, []string{idOf(task.StatusCancelled), idOf(task.StatusFailed)}},
		{"unknown", []task.Status{"nope"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := list(t, s, store.TaskListParams{Statuses: c.statuses})
			diff(t, "TaskList ids", c.want, ids(res.Items))
			if res.Total != len(c.want) {
				t.Errorf("Total = %d, want %d", res.Total, len(c.want))
			}
			for _, item := range res.Items {
				if c.statuses != nil && !slices.Contains(c.statuses, item.Status) {
					t.Errorf("item %s has status %s, not in %v", item.ID, item.Status, c.statuses)
				}
			}
		})
	}
}

func testListOwner(t *testing.T, s store.Store) {
	alice := withStatus(t, s, "alice")
	bob := insertTimes(t, s, "bob", 20, 21)
	cases := []struct {
		name     string
		p        store.TaskListParams
		want     []string
		wantTotl int
	}{
		{"bob", store.TaskListParams{Owner: "bob"}, reversed(bob), 2},
		{"alice", store.TaskListParams{Owner: "alice"}, nil, 5},
		{"alice pending", store.TaskListParams{Owner: "alice", Statuses: []task.Status{task.StatusPending}}, []string{alice[task.StatusPending].ID}, 1},
		{"bob running", store.TaskListParams{Owner: "bob", Statuses: []task.Status{task.StatusRunning}}, nil, 0},
		{"bob pending+failed", store.TaskListParams{Owner: "bob", Statuses: []task.Status{task.StatusPending, task.StatusFailed}}, reversed(bob), 2},
		{"nobody", store.TaskListParams{Owner: "carol"}, nil, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := list(t, s, c.p)
			if res.Total != c.wantTotl || len(res.Items) != c.wantTotl {
				t.Fatalf("%d items, total %d; want %d", len(res.Items), res.Total, c.wantTotl)
			}
			if c.want != nil {
				diff(t, "TaskList ids", c.want, ids(res.Items))
			}
			for _, item := range res.Items {
				if item.Owner != c.p.Owner {
					t.Errorf("item %s owner %q, want %q", item.ID, item.Owner, c.p.Owner)
				}
			}
		})
	}
}

func testListPaging(t *testing.T, s store.Store) {
	secs := make([]int, 25)
	for i := range secs {
		secs[i] = i
	}
	newest := reversed(insertTimes(t, s, "alice", secs...))
	cases := []struct {
		name          string
		limit, offset int
		want          []string
	}{
		{"default limit", 0, 0, newest[:store.DefaultListLimit]},
		{"negative limit", -3, 0, newest[:store.DefaultListLimit]},
		{"first page", 10, 0, newest[:10]},
		{"second page", 10, 10, newest[10:20]},
		{"last page", 10, 20, newest[20:]},
		{"past the middle", 7, 15, newest[15:22]},
		{"ending one before the end", 5, 19, newest[19:24]},
		{"last one", 5, 24, newest[24:]},
		{"past the end", 10, 30, nil},
		{"at the end", 10, 25, nil},
		{"negative offset", 5, -1, newest[:5]},
	}
	filters := map[string]store.TaskListParams{
		"all": {}, "owner": {Owner: "alice"}, "status": {Statuses: []task.Status{task.StatusPending}},
		"owner and status": {Owner: "alice", Statuses: []task.Status{task.StatusPending}},
	}
	for fname, f := range filters {
		for _, c := range cases {
			t.Run(fname+"/"+c.name, func(t *testing.T) {
				f.Limit, f.Offset = c.limit, c.offset
				res := list(t, s, f)
				diff(t, "page", c.want, ids(res.Items))
				if res.Total != 25 {
					t.Errorf("Total = %d, want 25", res.Total)
				}
			})
		}
	}
}

func testListLimitCap(t *testing.T, s store.Store) {
	n := store.MaxListLimit + 5
	for i := range n {
		insert(t, s, store.TaskInsertParams{Now: at(i)})
	}
	res := list(t, s, store.TaskListParams{Limit: 1000, Statuses: []task.Status{task.StatusPending}})
	if len(res.Items) != store.MaxListLimit || res.Total != n {
		t.Fatalf("Limit 1000: %d items, total %d; want %d, %d", len(res.Items), res.Total, store.MaxListLimit, n)
	}
}
