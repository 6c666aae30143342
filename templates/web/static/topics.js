/* The topic picker: ticking a topic unticks "All topics", and ticking "All topics" clears
   the topics, so the form always says what will be stored. Without this script the form
   still works: the server keeps the ticked topics when both arrive. */
(function () {
  "use strict";
  var all = document.getElementById("all_topics");
  if (!all) { return; }
  var topics = document.querySelectorAll('input[name="topics"]');
  all.addEventListener("change", function () {
    if (all.checked) {
      for (var i = 0; i < topics.length; i++) { topics[i].checked = false; }
    }
  });
  for (var i = 0; i < topics.length; i++) {
    topics[i].addEventListener("change", function (event) {
      if (event.target.checked) { all.checked = false; }
    });
  }
})();
