package client_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"

	"github.com/comfyfleet/comfyfleet/client"
)

// Submit a workflow with a param, follow its progress and download its outputs.
func Example() {
	ctx := context.Background()
	c, err := client.New("https://fleet.example.com", client.WithToken(os.Getenv("COMFYFLEET_API_KEY")))
	if err != nil {
		log.Fatal(err)
	}
	workflow, err := os.ReadFile("workflow.json") // ComfyUI's API format
	if err != nil {
		log.Fatal(err)
	}
	task, err := c.SubmitTask(ctx, &client.TaskRequest{
		Workflow: workflow,
		Params:   map[string]any{"Positive.text": "a cat"},
	})
	if err != nil {
		log.Fatal(err)
	}
	done, err := c.WaitTask(ctx, task.ID, func(p client.ProgressData) {
		fmt.Printf("%d%% %s %d/%d\n", p.Progress, p.ClassType, p.Value, p.Max)
	})
	if err != nil {
		log.Fatal(err)
	}
	if done.Status != client.StatusCompleted {
		log.Fatalf("task %s: %v", done.Status, done.Error)
	}
	for _, outs := range done.Result.Outputs {
		for _, o := range outs {
			f, _ := os.Create(o.Filename)
			if _, err := c.Download(ctx, o.URL, f); err != nil {
				log.Fatal(err)
			}
			f.Close()
		}
	}
}

// Follow every event your token may see; the stream reconnects by itself.
func ExampleClient_Subscribe() {
	ctx := context.Background()
	c, _ := client.New("http://localhost:3000", client.WithToken(os.Getenv("COMFYFLEET_API_KEY")))
	s, err := c.Subscribe(ctx, client.StreamOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	for ev := range s.Events() {
		switch ev.Type {
		case client.EventTaskProgress:
			p, _ := ev.Progress()
			fmt.Println(p.TaskID, p.Progress)
		case client.EventReconnected:
			fmt.Println("reconnected: read the state again")
		}
	}
}

// A webhook receiver: verify the signature over the raw body, then
// deduplicate on webhook-id.
func ExampleVerifyWebhook() {
	secret := os.Getenv("WEBHOOK_SECRET") // "whsec_...", from the subscription
	http.HandleFunc("/hooks/comfyfleet", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err := client.VerifyWebhook(secret, r.Header, body); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var ev struct {
			Type string `json:"type"`
			Data struct {
				TaskID string `json:"taskId"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &ev)
		fmt.Println(r.Header.Get("webhook-id"), ev.Type, ev.Data.TaskID)
		w.WriteHeader(http.StatusNoContent)
	})
}
