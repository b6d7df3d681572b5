// Package client is the Go client of the ComfyFleet API: tasks, files,
// instances and webhooks over REST, the /ws event stream with typed events
// and reconnection, waiting for a task with its progress, and the
// verification of webhook signatures.
//
// A Client is safe for concurrent use. Every call takes a context; API
// errors are *APIError with the status and the contract's error code.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one gateway.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// Option configures a Client.
type Option func(*Client)

// WithToken authenticates with an API key or a login token (Bearer).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient sets the HTTP client of REST calls (default: a client with
// a 2-minute timeout per call; downloads and waits use their context).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// New returns a client of the gateway at baseURL (for example
// "https://fleet.example.com").
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want http(s)://host[:port]", baseURL)
	}
	c := &Client{base: u, http: &http.Client{}}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// SetToken replaces the token (after Login, for example).
func (c *Client) SetToken(token string) { c.token = token }

// APIError is an error answer of the API.
type APIError struct {
	Status  int
	Code    string
	Message string
	Data    json.RawMessage
}

func (e *APIError) Error() string {
	return fmt.Sprintf("comfyfleet: %d %s: %s", e.Status, e.Code, e.Message)
}

// IsNotFound reports whether err is an API 404.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

type envelope struct {
	Code    int             `json:"code"`
	Data    json.RawMessage `json:"data"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
}

func (c *Client) url(path string, q url.Values) string {
	u := *c.base
	u.Path += path
	if len(q) > 0 {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// do sends a request and decodes the envelope's data into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body io.Reader, contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), body)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("client: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("client: %s %s: read answer: %w", method, path, err)
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return &APIError{Status: resp.StatusCode, Code: "bad_answer", Message: fmt.Sprintf("not a JSON envelope: %.200s", raw)}
	}
	if resp.StatusCode >= 300 {
		return &APIError{Status: resp.StatusCode, Code: env.Error, Message: env.Message, Data: env.Data}
	}
	if out != nil && len(env.Data) > 0 {
		if err := json.Unmarshal(env.Data, out); err != nil {
			return fmt.Errorf("client: %s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

func (c *Client) doJSON(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("client: %s %s: encode: %w", method, path, err)
		}
		body, ct = bytes.NewReader(raw), "application/json"
	}
	return c.do(ctx, method, path, q, body, ct, out)
}

// Login exchanges a username and password for a token, and uses it.
func (c *Client) Login(ctx context.Context, username, password string) (string, error) {
	var out struct {
		Token string `json:"token"`
	}
	if err := c.doJSON(ctx, "POST", "/api/auth/login", nil, map[string]string{"username": username, "password": password}, &out); err != nil {
		return "", err
	}
	c.token = out.Token
	return out.Token, nil
}

// Task statuses.
const (
	StatusPending   = "pending"
	StatusRunning   = "running"
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// Final reports whether a status is final.
func Final(status string) bool {
	return status == StatusCompleted || status == StatusFailed || status == StatusCancelled
}

// Webhook is a webhook subscription; Secret is set only when it was created.
type Webhook struct {
	ID        string   `json:"id"`
	URL       string   `json:"url"`
	Events    []string `json:"events"`
	TaskID    string   `json:"taskId,omitempty"`
	Owner     string   `json:"owner,omitempty"`
	Secret    string   `json:"secret,omitempty"`
	CreatedAt string   `json:"createdAt,omitempty"`
}

// TaskRequest is a task to submit.
type TaskRequest struct {
	// Workflow is ComfyUI's API format.
	Workflow json.RawMessage `json:"workflow"`
	// Params set node inputs by "<node id or title>.<input>"; a file
	// uploaded with UploadFile is FileParam(id).
	Params   map[string]any    `json:"params,omitempty"`
	Priority int               `json:"priority,omitempty"`
	Requires map[string]string `json:"requires,omitempty"`
	// Timeout overrides the run timeout, in milliseconds.
	Timeout int64 `json:"timeout,omitempty"`
	// Webhook receives the task's events.
	Webhook *WebhookRequest `json:"webhook,omitempty"`
}

// WebhookRequest registers a webhook (POST /api/webhooks or a task's own).
type WebhookRequest struct {
	URL    string   `json:"url"`
	Events []string `json:"events,omitempty"`
	Secret string   `json:"secret,omitempty"`
}

// FileParam is the params value naming an uploaded file.
func FileParam(fileID string) map[string]string { return map[string]string{"fileId": fileID} }

// Output is one output file of a task.
type Output struct {
	URL      string `json:"url"`
	Filename string `json:"filename"`
	Type     string `json:"type"`
	Kind     string `json:"kind"`
	NodeID   string `json:"nodeId"`
	FileID   string `json:"fileId"`
}

// Result is a completed task's outputs.
type Result struct {
	Files   []string            `json:"files"`
	Outputs map[string][]Output `json:"outputs"`
}

// TaskError is why a task failed.
type TaskError struct {
	Type       string          `json:"type"`
	Message    string          `json:"message"`
	NodeID     string          `json:"nodeId,omitempty"`
	NodeType   string          `json:"nodeType,omitempty"`
	NodeErrors json.RawMessage `json:"nodeErrors,omitempty"`
}

func (e *TaskError) Error() string { return e.Type + ": " + e.Message }

// Task is a task as the API shows it.
type Task struct {
	ID              string          `json:"id"`
	Owner           string          `json:"owner"`
	Status          string          `json:"status"`
	Progress        int             `json:"progress"`
	Priority        int             `json:"priority"`
	InstanceID      string          `json:"instanceId"`
	Attempts        int             `json:"attempts"`
	CreatedAt       string          `json:"createdAt"`
	UpdatedAt       string          `json:"updatedAt"`
	StartedAt       *string         `json:"startedAt"`
	FinishedAt      *string         `json:"finishedAt"`
	Workflow        json.RawMessage `json:"workflow,omitempty"`
	Params          json.RawMessage `json:"params,omitempty"`
	Result          *Result         `json:"result"`
	Error           *TaskError      `json:"error"`
	QueuePosition   *int            `json:"queuePosition,omitempty"`
	CancelRequested bool            `json:"cancelRequested,omitempty"`
	// Pinned: the gateway's retention keeps the task and its output files
	// whatever their age (PinTask).
	Pinned bool `json:"pinned"`
	// Webhook is the task's own webhook, in SubmitTask's answer only.
	Webhook *Webhook `json:"webhook,omitempty"`
}

// SubmitTask submits a task (POST /api/tasks).
func (c *Client) SubmitTask(ctx context.Context, req *TaskRequest) (*Task, error) {
	var t Task
	if err := c.doJSON(ctx, "POST", "/api/tasks", nil, req, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// GetTask reads a task.
func (c *Client) GetTask(ctx context.Context, id string) (*Task, error) {
	var t Task
	if err := c.doJSON(ctx, "GET", "/api/tasks/"+url.PathEscape(id), nil, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// ListTasksOptions filter and page ListTasks.
type ListTasksOptions struct {
	// Statuses keeps tasks in these statuses; empty keeps all.
	Statuses []string
	Limit    int
	Offset   int
}

// TaskList is one page of tasks.
type TaskList struct {
	Total  int     `json:"total"`
	Items  []*Task `json:"items"`
	Limit  int     `json:"limit"`
	Offset int     `json:"offset"`
}

// ListTasks pages through the caller's tasks (every task for an admin), newest first.
func (c *Client) ListTasks(ctx context.Context, o ListTasksOptions) (*TaskList, error) {
	q := url.Values{}
	if len(o.Statuses) > 0 {
		q.Set("status", strings.Join(o.Statuses, ","))
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Offset > 0 {
		q.Set("offset", strconv.Itoa(o.Offset))
	}
	var out TaskList
	if err := c.doJSON(ctx, "GET", "/api/tasks", q, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// CancelTask cancels a pending task, or asks a running one to stop (the
// answer is then still running, with CancelRequested).
func (c *Client) CancelTask(ctx context.Context, id string) (*Task, error) {
	var t Task
	if err := c.doJSON(ctx, "DELETE", "/api/tasks/"+url.PathEscape(id), nil, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

// PinTask pins a task of the caller (pinned true: POST
// /api/tasks/{id}/pin), so the gateway's retention keeps it and its output
// files whatever their age, or unpins it (false: DELETE).
func (c *Client) PinTask(ctx context.Context, id string, pinned bool) (*Task, error) {
	var t Task
	if err := c.doJSON(ctx, pinMethod(pinned), "/api/tasks/"+url.PathEscape(id)+"/pin", nil, nil, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

func pinMethod(pinned bool) string {
	if pinned {
		return http.MethodPost
	}
	return http.MethodDelete
}

// Instance is one ComfyUI instance of the fleet.
type Instance struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	Alive         bool              `json:"alive"`
	Busy          bool              `json:"busy"`
	Enabled       bool              `json:"enabled"`
	CurrentTaskID string            `json:"currentTaskId"`
	LastError     string            `json:"lastError"`
	Labels        map[string]string `json:"labels,omitempty"`
}

// ListInstances lists the fleet's instances.
func (c *Client) ListInstances(ctx context.Context) ([]Instance, error) {
	var raw json.RawMessage
	if err := c.doJSON(ctx, "GET", "/api/instances", nil, nil, &raw); err != nil {
		return nil, err
	}
	var out []Instance
	if err := json.Unmarshal(raw, &out); err == nil {
		return out, nil
	}
	var page struct {
		Items []Instance `json:"items"`
	}
	if err := json.Unmarshal(raw, &page); err != nil {
		return nil, fmt.Errorf("client: decode instances: %w", err)
	}
	return page.Items, nil
}

// File is a stored file record.
type File struct {
	ID          string `json:"fileId"`
	Filename    string `json:"filename"`
	ContentType string `json:"contentType"`
	Size        int64  `json:"size"`
	URL         string `json:"url"`
	// Pinned: the gateway's retention keeps the file whatever its age
	// (PinFile).
	Pinned bool `json:"pinned"`
}

// PinFile pins a file of the caller (pinned true: POST
// /api/files/{id}/pin), so the gateway's retention keeps it whatever its
// age, or unpins it (false: DELETE).
func (c *Client) PinFile(ctx context.Context, id string, pinned bool) (*File, error) {
	var f File
	if err := c.doJSON(ctx, pinMethod(pinned), "/api/files/"+url.PathEscape(id)+"/pin", nil, nil, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// UploadFile uploads a file to use as a task input (FileParam).
func (c *Client) UploadFile(ctx context.Context, name string, r io.Reader) (*File, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, err := mw.CreateFormFile("file", name)
		if err == nil {
			_, err = io.Copy(part, r)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	var f File
	err := c.do(ctx, "POST", "/api/files/upload", nil, pr, mw.FormDataContentType(), &f)
	pr.Close()
	if err != nil {
		return nil, err
	}
	return &f, nil
}

// Download writes the file at url (an output's URL) to w.
func (c *Client) Download(ctx context.Context, fileURL string, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", fileURL, nil)
	if err != nil {
		return 0, fmt.Errorf("client: download %s: %w", fileURL, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("client: download %s: %w", fileURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("client: download %s: HTTP %d", fileURL, resp.StatusCode)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return n, fmt.Errorf("client: download %s: %w", fileURL, err)
	}
	return n, nil
}

// CreateWebhook subscribes a URL to events of all the caller's tasks; the
// answer's Secret is shown only here.
func (c *Client) CreateWebhook(ctx context.Context, req *WebhookRequest) (*Webhook, error) {
	var w Webhook
	if err := c.doJSON(ctx, "POST", "/api/webhooks", nil, req, &w); err != nil {
		return nil, err
	}
	return &w, nil
}

// DeleteWebhook removes a subscription.
func (c *Client) DeleteWebhook(ctx context.Context, id string) error {
	return c.doJSON(ctx, "DELETE", "/api/webhooks/"+url.PathEscape(id), nil, nil, nil)
}

// Delivery is one webhook delivery of a task's log.
type Delivery struct {
	ID         string `json:"id"`
	WebhookID  string `json:"webhookId"`
	EventID    string `json:"eventId"`
	Type       string `json:"type"`
	URL        string `json:"url"`
	State      string `json:"state"`
	Attempts   int    `json:"attempts"`
	LastStatus int    `json:"lastStatus"`
	LastError  string `json:"lastError,omitempty"`
	Log        []struct {
		At         time.Time `json:"at"`
		Status     int       `json:"status"`
		Error      string    `json:"error,omitempty"`
		DurationMs int64     `json:"durationMs"`
	} `json:"log"`
}

// TaskDeliveries returns a task's webhook delivery log.
func (c *Client) TaskDeliveries(ctx context.Context, taskID string) ([]Delivery, error) {
	var out struct {
		Items []Delivery `json:"items"`
	}
	if err := c.doJSON(ctx, "GET", "/api/tasks/"+url.PathEscape(taskID)+"/webhooks", nil, nil, &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}
