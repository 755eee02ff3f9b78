# C declarations of libgearman 1.1.20 (only what pygearman uses). Declares; never decides.
# Not declared on purpose: gearman_worker_shutdown_handle, gearman_client_namespace and
# gearman_worker_set_ssl are in the headers but not exported by libgearman.so.8 (docs/libgearman-1.1.20.md#missing-symbols).
from libc.stdint cimport uint32_t
from libc.time cimport time_t

cdef extern from "<stdbool.h>" nogil:
    ctypedef unsigned char c_bool "bool"

cdef extern from "libgearman-1.0/gearman.h" nogil:
    const char *LIBGEARMAN_VERSION_STRING

    ctypedef struct gearman_client_st:
        pass
    ctypedef struct gearman_worker_st:
        pass
    ctypedef struct gearman_task_st:
        pass
    ctypedef struct gearman_job_st:
        pass

    ctypedef enum gearman_return_t:
        GEARMAN_SUCCESS
        GEARMAN_IO_WAIT
        GEARMAN_SHUTDOWN
        GEARMAN_SHUTDOWN_GRACEFUL
        GEARMAN_ERRNO
        GEARMAN_EVENT
        GEARMAN_TOO_MANY_ARGS
        GEARMAN_NO_ACTIVE_FDS
        GEARMAN_INVALID_MAGIC
        GEARMAN_INVALID_COMMAND
        GEARMAN_INVALID_PACKET
        GEARMAN_UNEXPECTED_PACKET
        GEARMAN_GETADDRINFO
        GEARMAN_NO_SERVERS
        GEARMAN_LOST_CONNECTION
        GEARMAN_MEMORY_ALLOCATION_FAILURE
        GEARMAN_JOB_EXISTS
        GEARMAN_JOB_QUEUE_FULL
        GEARMAN_SERVER_ERROR
        GEARMAN_WORK_ERROR
        GEARMAN_WORK_DATA
        GEARMAN_WORK_WARNING
        GEARMAN_WORK_STATUS
        GEARMAN_WORK_EXCEPTION
        GEARMAN_WORK_FAIL
        GEARMAN_NOT_CONNECTED
        GEARMAN_COULD_NOT_CONNECT
        GEARMAN_SEND_IN_PROGRESS
        GEARMAN_RECV_IN_PROGRESS
        GEARMAN_NOT_FLUSHING
        GEARMAN_DATA_TOO_LARGE
        GEARMAN_INVALID_FUNCTION_NAME
        GEARMAN_INVALID_WORKER_FUNCTION
        GEARMAN_NO_REGISTERED_FUNCTION
        GEARMAN_NO_REGISTERED_FUNCTIONS
        GEARMAN_NO_JOBS
        GEARMAN_ECHO_DATA_CORRUPTION
        GEARMAN_NEED_WORKLOAD_FN
        GEARMAN_PAUSE
        GEARMAN_UNKNOWN_STATE
        GEARMAN_PTHREAD
        GEARMAN_PIPE_EOF
        GEARMAN_QUEUE_ERROR
        GEARMAN_FLUSH_DATA
        GEARMAN_SEND_BUFFER_TOO_SMALL
        GEARMAN_IGNORE_PACKET
        GEARMAN_UNKNOWN_OPTION
        GEARMAN_TIMEOUT
        GEARMAN_ARGUMENT_TOO_LARGE
        GEARMAN_INVALID_ARGUMENT
        GEARMAN_IN_PROGRESS
        GEARMAN_INVALID_SERVER_OPTION
        GEARMAN_JOB_NOT_FOUND
        GEARMAN_MAX_RETURN
        GEARMAN_FAIL
        GEARMAN_FATAL
        GEARMAN_ERROR

    bint gearman_success(gearman_return_t rc)
    bint gearman_failed(gearman_return_t rc)
    bint gearman_continue(gearman_return_t rc)
    const char *gearman_strerror(gearman_return_t rc)
    const char *gearman_version()

    ctypedef enum gearman_job_priority_t:
        GEARMAN_JOB_PRIORITY_HIGH
        GEARMAN_JOB_PRIORITY_NORMAL
        GEARMAN_JOB_PRIORITY_LOW

    ctypedef enum gearman_verbose_t:
        GEARMAN_VERBOSE_NEVER
        GEARMAN_VERBOSE_FATAL
        GEARMAN_VERBOSE_ERROR
        GEARMAN_VERBOSE_INFO
        GEARMAN_VERBOSE_DEBUG
        GEARMAN_VERBOSE_CRAZY

    ctypedef enum gearman_client_options_t:
        GEARMAN_CLIENT_NON_BLOCKING
        GEARMAN_CLIENT_FREE_TASKS
        GEARMAN_CLIENT_GENERATE_UNIQUE
        GEARMAN_CLIENT_EXCEPTION
        GEARMAN_CLIENT_SSL

    ctypedef enum gearman_worker_options_t:
        GEARMAN_WORKER_NON_BLOCKING
        GEARMAN_WORKER_GRAB_UNIQ
        GEARMAN_WORKER_TIMEOUT_RETURN
        GEARMAN_WORKER_GRAB_ALL

    enum:
        GEARMAN_FUNCTION_MAX_SIZE
        GEARMAN_MAX_UNIQUE_SIZE
        GEARMAN_MAX_IDENTIFIER
        GEARMAN_JOB_HANDLE_SIZE

    ctypedef char gearman_job_handle_t[64]
    ctypedef unsigned short in_port_t

    ctypedef struct gearman_string_t:
        const char *c_str
        size_t size

    ctypedef struct gearman_id_t:
        int read_fd
        int write_fd

    ctypedef enum gearman_signal_t:
        GEARMAN_INTERRUPT
        GEARMAN_KILL

    gearman_return_t gearman_kill(const gearman_id_t handle, const gearman_signal_t)

    # task callbacks: run inside gearman_client_run_tasks, i.e. with the GIL released
    ctypedef gearman_return_t (*gearman_task_fn)(gearman_task_st *task) noexcept nogil
    ctypedef void (*gearman_log_fn)(const char *line, gearman_verbose_t verbose, void *context) noexcept nogil

    # ---- client ----
    gearman_client_st *gearman_client_create(gearman_client_st *client)
    void gearman_client_free(gearman_client_st *client)
    const char *gearman_client_error(const gearman_client_st *client)
    gearman_return_t gearman_client_error_code(const gearman_client_st *client)
    int gearman_client_errno(const gearman_client_st *client)
    void gearman_client_add_options(gearman_client_st *client, gearman_client_options_t options)
    void gearman_client_remove_options(gearman_client_st *client, gearman_client_options_t options)
    void gearman_client_set_timeout(gearman_client_st *client, int timeout)
    void gearman_client_set_log_fn(gearman_client_st *client, gearman_log_fn function,
                                   void *context, gearman_verbose_t verbose)
    gearman_return_t gearman_client_add_server(gearman_client_st *client, const char *host, in_port_t port)
    void gearman_client_remove_servers(gearman_client_st *client)
    gearman_return_t gearman_client_job_status(gearman_client_st *client, const char *job_handle,
                                               c_bool *is_known, c_bool *is_running,
                                               uint32_t *numerator, uint32_t *denominator)
    gearman_return_t gearman_client_echo(gearman_client_st *client, const void *workload, size_t workload_size)
    bint gearman_client_set_server_option(gearman_client_st *self, const char *option_arg, size_t option_arg_size)
    void gearman_client_set_namespace(gearman_client_st *self, const char *namespace_key, size_t namespace_key_size)
    gearman_return_t gearman_client_set_identifier(gearman_client_st *client, const char *id, size_t id_size)
    gearman_return_t gearman_client_run_tasks(gearman_client_st *client)
    gearman_return_t gearman_client_wait(gearman_client_st *client)

    gearman_task_st *gearman_client_add_task(gearman_client_st *client, gearman_task_st *task, void *context,
                                             const char *function_name, const char *unique,
                                             const void *workload, size_t workload_size,
                                             gearman_return_t *ret_ptr)
    gearman_task_st *gearman_client_add_task_high(gearman_client_st *client, gearman_task_st *task, void *context,
                                                  const char *function_name, const char *unique,
                                                  const void *workload, size_t workload_size,
                                                  gearman_return_t *ret_ptr)
    gearman_task_st *gearman_client_add_task_low(gearman_client_st *client, gearman_task_st *task, void *context,
                                                 const char *function_name, const char *unique,
                                                 const void *workload, size_t workload_size,
                                                 gearman_return_t *ret_ptr)
    gearman_task_st *gearman_client_add_task_background(gearman_client_st *client, gearman_task_st *task,
                                                        void *context, const char *function_name,
                                                        const char *unique, const void *workload,
                                                        size_t workload_size, gearman_return_t *ret_ptr)
    gearman_task_st *gearman_client_add_task_high_background(gearman_client_st *client, gearman_task_st *task,
                                                             void *context, const char *function_name,
                                                             const char *unique, const void *workload,
                                                             size_t workload_size, gearman_return_t *ret_ptr)
    gearman_task_st *gearman_client_add_task_low_background(gearman_client_st *client, gearman_task_st *task,
                                                            void *context, const char *function_name,
                                                            const char *unique, const void *workload,
                                                            size_t workload_size, gearman_return_t *ret_ptr)

    void gearman_client_set_created_fn(gearman_client_st *client, gearman_task_fn function)
    void gearman_client_set_data_fn(gearman_client_st *client, gearman_task_fn function)
    void gearman_client_set_warning_fn(gearman_client_st *client, gearman_task_fn function)
    void gearman_client_set_status_fn(gearman_client_st *client, gearman_task_fn function)
    void gearman_client_set_complete_fn(gearman_client_st *client, gearman_task_fn function)
    void gearman_client_set_exception_fn(gearman_client_st *client, gearman_task_fn function)
    void gearman_client_set_fail_fn(gearman_client_st *client, gearman_task_fn function)

    gearman_task_st *gearman_client_add_task_status(gearman_client_st *client, gearman_task_st *task,
                                                    void *context, const char *job_handle,
                                                    gearman_return_t *ret_ptr)
    gearman_task_st *gearman_client_add_task_status_by_unique(gearman_client_st *client,
                                                              gearman_task_st *task_ptr,
                                                              const char *unique_handle,
                                                              gearman_return_t *ret_ptr)

    ctypedef struct gearman_task_attr_t:
        pass
    ctypedef struct gearman_argument_t:
        pass
    gearman_task_attr_t gearman_task_attr_init_epoch(time_t epoch, gearman_job_priority_t priority)
    gearman_argument_t gearman_argument_make(const char *name, const size_t name_length,
                                             const char *value, const size_t value_size)
    gearman_task_st *gearman_execute(gearman_client_st *client,
                                     const char *function_name, size_t function_name_length,
                                     const char *unique, size_t unique_length,
                                     gearman_task_attr_t *workload, gearman_argument_t *arguments,
                                     void *context)

    # ---- task ----
    void gearman_task_free(gearman_task_st *task)
    void *gearman_task_context(const gearman_task_st *task)
    void gearman_task_set_context(gearman_task_st *task, void *context)
    const char *gearman_task_job_handle(const gearman_task_st *task)
    bint gearman_task_is_known(const gearman_task_st *task)
    bint gearman_task_is_running(const gearman_task_st *task)
    uint32_t gearman_task_numerator(const gearman_task_st *task)
    uint32_t gearman_task_denominator(const gearman_task_st *task)
    const void *gearman_task_data(const gearman_task_st *task)
    size_t gearman_task_data_size(const gearman_task_st *task)
    void *gearman_task_take_data(gearman_task_st *task, size_t *data_size)
    gearman_return_t gearman_task_return(const gearman_task_st *task)
    gearman_string_t gearman_task_exception(const gearman_task_st *task)

    # ---- worker ----
    ctypedef gearman_return_t (*gearman_function_fn)(gearman_job_st *job, void *worker_context) noexcept nogil
    ctypedef struct gearman_function_t:
        pass
    gearman_function_t gearman_function_create(gearman_function_fn func)

    gearman_worker_st *gearman_worker_create(gearman_worker_st *worker)
    void gearman_worker_free(gearman_worker_st *worker)
    const char *gearman_worker_error(const gearman_worker_st *worker)
    void gearman_worker_set_timeout(gearman_worker_st *worker, int timeout)
    void gearman_worker_set_log_fn(gearman_worker_st *worker, gearman_log_fn function,
                                   void *context, gearman_verbose_t verbose)
    gearman_return_t gearman_worker_add_server(gearman_worker_st *worker, const char *host, in_port_t port)
    void gearman_worker_remove_servers(gearman_worker_st *worker)
    gearman_return_t gearman_worker_unregister(gearman_worker_st *worker, const char *function_name)
    gearman_return_t gearman_worker_unregister_all(gearman_worker_st *worker)
    gearman_return_t gearman_worker_define_function(gearman_worker_st *worker,
                                                    const char *function_name, const size_t function_name_length,
                                                    const gearman_function_t function,
                                                    const uint32_t timeout, void *context)
    gearman_return_t gearman_worker_work(gearman_worker_st *worker)
    gearman_return_t gearman_worker_wait(gearman_worker_st *worker)
    void gearman_worker_remove_options(gearman_worker_st *worker, gearman_worker_options_t options)
    void gearman_worker_add_options(gearman_worker_st *worker, gearman_worker_options_t options)
    gearman_return_t gearman_worker_echo(gearman_worker_st *worker, const void *workload, size_t workload_size)
    void gearman_worker_set_namespace(gearman_worker_st *self, const char *namespace_key, size_t namespace_key_size)
    gearman_id_t gearman_worker_id(gearman_worker_st *self)
    gearman_return_t gearman_worker_set_identifier(gearman_worker_st *worker, const char *id, size_t id_size)

    # ---- job (valid only inside the worker function) ----
    gearman_return_t gearman_job_send_data(gearman_job_st *job, const void *data, size_t data_size)
    gearman_return_t gearman_job_send_warning(gearman_job_st *job, const void *warning, size_t warning_size)
    gearman_return_t gearman_job_send_status(gearman_job_st *job, uint32_t numerator, uint32_t denominator)
    gearman_return_t gearman_job_send_complete(gearman_job_st *job, const void *result, size_t result_size)
    gearman_return_t gearman_job_send_exception(gearman_job_st *job, const void *exception, size_t exception_size)
    gearman_return_t gearman_job_send_fail(gearman_job_st *job)
    const char *gearman_job_handle(const gearman_job_st *job)
    const char *gearman_job_function_name(const gearman_job_st *job)
    const char *gearman_job_unique(const gearman_job_st *job)
    const void *gearman_job_workload(const gearman_job_st *job)
    size_t gearman_job_workload_size(const gearman_job_st *job)
    const char *gearman_job_error(gearman_job_st *job)
