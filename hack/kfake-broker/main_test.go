package main

import "testing"

func TestParseTopicCount(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    topicCount
		wantErr bool
	}{
		{in: "orders", want: topicCount{"orders", 3}},
		{in: "orders:12", want: topicCount{"orders", 12}},
		{in: "orders:0", wantErr: true},
		{in: "orders:x", wantErr: true},
		{in: ":3", wantErr: true},
	} {
		got, err := parseTopicCount(tc.in, 3)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("parseTopicCount(%q) = %+v, %v; want %+v (error: %v)", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}
